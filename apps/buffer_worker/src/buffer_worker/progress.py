"""The progress port as the buffer worker gives it to the core: judged on the event loop, then sent.

The core reports from the job thread. Each update is handed to the worker's event loop, where
the worker judges it (its phase and progress go into the heartbeat; nothing more is sent for a
job whose lease is lost) before the sender gets it: the only place the job's phase and progress
exist is the core's progress reports, so the port is wrapped rather than the core asked for a
second channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastwan_core import ProgressUpdate
from fastwan_core.ports import ProgressReporter

__all__ = ["JobProgress"]

log = logging.getLogger(__name__)

#: ``(job_id, update) -> send it?``, called on the event loop.
Judge = Callable[[str, ProgressUpdate], bool]


class JobProgress:
    """Hands each update to the loop given to :meth:`attach`, then to ``sender`` if the judge
    lets it through. Keeps the port's promise (never raises) whatever the judge or the sender do."""

    def __init__(self, sender: ProgressReporter) -> None:
        self.sender = sender
        self._loop: asyncio.AbstractEventLoop | None = None
        self._judge: Judge = lambda _job_id, _update: True

    def attach(self, loop: asyncio.AbstractEventLoop, judge: Judge) -> None:
        self._loop, self._judge = loop, judge

    def report(self, job_id: str, update: ProgressUpdate) -> None:
        """From any thread; the update is judged and sent on the loop, in order."""
        if self._loop is None:
            log.warning("progress for job %s not reported: the worker is not running", job_id)
            return
        try:
            self._loop.call_soon_threadsafe(self._take, job_id, update)
        except Exception:  # the loop is closed: the worker is gone
            log.warning("progress for job %s not reported", job_id, exc_info=True)

    def _take(self, job_id: str, update: ProgressUpdate) -> None:
        try:
            if self._judge(job_id, update):
                self.sender.report(job_id, update)
        except Exception:
            log.warning("progress for job %s not reported", job_id, exc_info=True)
