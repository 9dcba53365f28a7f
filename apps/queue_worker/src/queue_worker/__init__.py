"""SaladCloud queue-mode worker: FastAPI app behind Salad's job-queue binary."""
