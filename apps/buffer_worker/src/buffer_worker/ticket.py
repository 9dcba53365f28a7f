"""One claimed job in hand: its ids, why it is being stopped, and the core's cancellation signal.

The reasons decide how the job is reported, and the first one given stands: a job cancelled by
the orchestrator and then caught by a shutdown stays cancelled.
"""

from __future__ import annotations

import enum
from typing import Final

from fastwan_core import SHUTDOWN_MESSAGE, Cancellation, ErrorCode

__all__ = ["JobTicket", "StopReason"]


class StopReason(enum.Enum):
    """Why a job in hand is being stopped before its end.

    ``CANCELLED``: the orchestrator named it in ``cancel_job_ids``; reported ``cancelled``.
    ``LEASE_LOST``: a status call answered 404/409; the job is not ours, nothing is reported.
    ``SHUTDOWN``: SIGTERM/SIGINT and the grace period ran out; reported ``worker_shutdown``.
    ``RESTART``: the worker cannot go on (its heartbeat died); reported failed and retryable.
    """

    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"
    RESTART = "restart"


_STOPS: Final = {
    StopReason.CANCELLED: (ErrorCode.CANCELLED, "job cancelled by the orchestrator"),
    StopReason.LEASE_LOST: (ErrorCode.CANCELLED, "job cancelled"),
    StopReason.SHUTDOWN: (ErrorCode.WORKER_SHUTDOWN, SHUTDOWN_MESSAGE),
    StopReason.RESTART: (ErrorCode.INTERNAL_ERROR, "the worker is restarting: it cannot go on"),
}


class JobTicket:
    """One claimed job.

    Attributes:
        buffer_job_id: the id of the status endpoint.
        job_id: the orchestrator's ``musetalk_job_id`` (progress endpoint, output name), when
            the claimed job had a readable one.
        started: ``time.monotonic()`` at claim.
        cancellation: what the core's use case checks between steps (``CancelSignal``).
    """

    def __init__(self, buffer_job_id: str, job_id: str | None, started: float) -> None:
        self.buffer_job_id = buffer_job_id
        self.job_id = job_id
        self.started = started
        self.cancellation = Cancellation()
        self.reason: StopReason | None = None

    def __repr__(self) -> str:
        return (
            f"JobTicket(buffer_job_id={self.buffer_job_id!r}, job_id={self.job_id!r}, reason={self.reason})"
        )

    def stop(self, reason: StopReason, detail: str | None = None) -> bool:
        """Ask the job to stop at its next step; ``False`` if it was already asked (the first
        reason stands). ``detail`` says why a restart is needed; it ends up in the job's error."""
        code, message = _STOPS[reason]
        if reason is StopReason.RESTART and detail:
            message = f"the worker is restarting: {detail}"
        if not self.cancellation.cancel(code, message):
            return False
        self.reason = reason
        return True

    def ids(self) -> tuple[str, str | None]:
        return self.buffer_job_id, self.job_id
