"""A progress reporter for runs with no orchestrator: the embedded default and the CLI."""

from __future__ import annotations

import logging

from fastwan_core import ProgressUpdate, progress_to_wire

log = logging.getLogger("fastwan.progress")


class LoggingProgressReporter:
    """Logs each update at INFO; nothing leaves the process."""

    def report(self, job_id: str, update: ProgressUpdate) -> None:
        log.info("progress %s", progress_to_wire(update), extra={"job_id": job_id})
