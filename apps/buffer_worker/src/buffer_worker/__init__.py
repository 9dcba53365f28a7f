"""Buffer-mode worker for Vast.ai and local boxes: claims jobs from the orchestrator."""
