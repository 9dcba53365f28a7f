"""Real implementations of the fastwan_core ports: model, encoder, orchestrator, storage, images."""
