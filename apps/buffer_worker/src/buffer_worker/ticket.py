"""The job in hand: its ticket (its ids, why it is stopped, the core's cancellation signal), and
the terminal status of a job that the worker, not the job, ends.

A job stopped between steps is reported by the core with its ticket's reason, and the first
reason given stands: a job cancelled by the orchestrator and then caught by a shutdown stays
cancelled. A job that did not even stop in time has no result and gets one here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final

import attrs

from fastwan_core import SHUTDOWN_MESSAGE, Cancellation, ErrorCode, JobResult, Metrics

__all__ = ["JobTicket", "StopReason", "final_result"]


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


@attrs.define(eq=False)
class JobTicket:
    """One claimed job.

    Attributes:
        buffer_job_id: the id of the status endpoint.
        job_id: the orchestrator's ``musetalk_job_id`` (progress endpoint, output name), when
            the claimed job had a readable one.
        started: ``time.monotonic()`` at claim.
        cancellation: what the core's use case checks between steps (``CancelSignal``).
    """

    buffer_job_id: str
    job_id: str | None
    started: float
    cancellation: Cancellation = attrs.field(factory=Cancellation, repr=False)
    reason: StopReason | None = None

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


def final_result(
    ticket: JobTicket,
    result: JobResult | None,
    *,
    restart_reason: str | None,
    fallback_metrics: Callable[[], Metrics],
) -> JobResult:
    """What to report for ``ticket``: the core's ``result`` as it ended (a ``fatal`` failure is
    already retryable: ``fastwan_core.errors.retry_decision``); for a job that did not end in
    time (``None``), ``worker_shutdown``, or ``internal_error`` when the worker must restart."""
    if result is not None:
        return result
    if restart_reason is not None:
        message, code = f"the worker is restarting: {restart_reason}", ErrorCode.INTERNAL_ERROR
    else:
        message, code = SHUTDOWN_MESSAGE, ErrorCode.WORKER_SHUTDOWN
    return JobResult.failure(code, message, job_id=ticket.job_id, metrics=fallback_metrics())
