"""The progress port as the buffer worker gives it to the core: seen by the board, then sent.

The heartbeat carries the job's phase and progress; the only place they exist is the core's
progress reports, so the port is wrapped rather than the core asked for a second channel.
"""

from __future__ import annotations

import logging

from buffer_worker.board import WorkerBoard
from fastwan_core import ProgressUpdate
from fastwan_core.ports import ProgressReporter

__all__ = ["BoardProgressReporter"]

log = logging.getLogger(__name__)


class BoardProgressReporter:
    """Notes each update on the board, then hands it to ``inner`` unless the board holds it back.

    Keeps the port's promise (never raises) even if ``inner`` or the board breaks it.
    """

    def __init__(self, inner: ProgressReporter, board: WorkerBoard) -> None:
        self._inner = inner
        self._board = board

    def report(self, job_id: str, update: ProgressUpdate) -> None:
        try:
            if self._board.observe(job_id, update):
                self._inner.report(job_id, update)
        except Exception:
            log.warning("progress for job %s not reported", job_id, exc_info=True)
