"""The terminal status a claimed job ends with, when the worker, not the job, decides it.

A job stopped between steps is reported by the core with the reason its ticket gives
(``cancelled``, ``worker_shutdown``, ``internal_error``). A job that did not even stop in time
has no result at all and gets one here: ``worker_shutdown``, or ``internal_error`` when the
worker is restarting (``restart_reason``).
"""

from __future__ import annotations

from collections.abc import Callable

from buffer_worker.ticket import JobTicket
from fastwan_core import SHUTDOWN_MESSAGE, ErrorCode, JobResult, Metrics

__all__ = ["final_result", "leaving_result"]


def leaving_result(job_id: str | None, metrics: Metrics, restart_reason: str | None = None) -> JobResult:
    """The failure for a job the worker gives up because it is leaving (to restart, with a reason)."""
    if restart_reason is not None:
        return JobResult.failure(
            ErrorCode.INTERNAL_ERROR,
            f"the worker is restarting: {restart_reason}",
            job_id=job_id,
            metrics=metrics,
        )
    return JobResult.failure(ErrorCode.WORKER_SHUTDOWN, SHUTDOWN_MESSAGE, job_id=job_id, metrics=metrics)


def final_result(
    ticket: JobTicket,
    result: JobResult | None,
    *,
    restart_reason: str | None,
    fallback_metrics: Callable[[], Metrics],
) -> JobResult:
    """What to report for ``ticket``, given the core's ``result`` (``None``: the job did not end
    in time) and why the worker must restart, if it must.

    A job that ended (on its own or stopped at a step) is reported as the core ended it (a
    ``fatal`` failure is already retryable: ``fastwan_core.errors.retry_decision``).
    """
    if result is None:
        return leaving_result(ticket.job_id, fallback_metrics(), restart_reason)
    return result
