"""fastwan-generate: one video from the command line, through the core use case."""
