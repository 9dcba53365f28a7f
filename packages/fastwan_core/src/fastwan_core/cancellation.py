"""Stopping a job between steps, and why: the reason decides how the job is reported.

A job stopped because someone asked (the orchestrator's ``cancel_job_ids``, a caller that hung
up) is ``cancelled``. A job stopped because the worker is leaving is the worker's fault, not
the job's: ``failed`` with ``worker_shutdown`` (retryable), so the orchestrator runs it
elsewhere. The first reason given wins: a job cancelled and then caught by a shutdown stays
cancelled.
"""

from __future__ import annotations

import threading
from typing import Final

from fastwan_core.errors import ErrorCode

__all__ = ["NEVER_CANCELLED", "SHUTDOWN_MESSAGE", "Cancellation"]

#: The error of a job that ends because the worker is leaving (``worker_shutdown``), in every mode,
#: whether the job stopped at a step or never came back.
SHUTDOWN_MESSAGE: Final = "the worker is shutting down: the job was stopped before it finished"

_DEFAULT_MESSAGES: Final = {
    ErrorCode.CANCELLED: "job cancelled",
    ErrorCode.WORKER_SHUTDOWN: SHUTDOWN_MESSAGE,
}


class Cancellation:
    """A thread-safe request to stop one job at its next cancellation point."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._code = ErrorCode.CANCELLED
        self._message = _DEFAULT_MESSAGES[ErrorCode.CANCELLED]

    def cancel(self, code: ErrorCode = ErrorCode.CANCELLED, message: str | None = None) -> bool:
        """Ask the job to stop; True if this call gave the reason (the first one wins)."""
        with self._lock:
            if self._event.is_set():
                return False
            self._code = code
            self._message = message or _DEFAULT_MESSAGES.get(code, code.value.replace("_", " "))
            self._event.set()
            return True

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def code(self) -> ErrorCode:
        """Why: ``CANCELLED`` (reported cancelled) or a failure code such as ``WORKER_SHUTDOWN``."""
        return self._code

    @property
    def message(self) -> str:
        return self._message


class _Never:
    code: Final = ErrorCode.CANCELLED
    message: Final = ""

    def is_set(self) -> bool:
        return False


#: For callers that never cancel.
NEVER_CANCELLED: Final = _Never()
