"""The terminal status of a job the worker, not the job, ended."""

from __future__ import annotations

from buffer_worker.board import JobTicket, StopReason
from buffer_worker.control import Leaving
from buffer_worker.outcomes import final_result
from fastwan_core import ErrorCode, JobFailure, JobResult, JobState, Metrics

OWN = Metrics(duration_sec=4.2, steps=3)
FALLBACK = Metrics(duration_sec=9.9, worker_id="w-1")
CANCELLED = JobResult.failure(ErrorCode.CANCELLED, "job cancelled", job_id="j-1", metrics=OWN)
SUCCEEDED = JobResult(status=JobState.SUCCEEDED, job_id="j-1", output_url="file:///o/j-1.mp4", metrics=OWN)


def stopped(reason: StopReason | None) -> JobTicket:
    ticket = JobTicket("b-1", "j-1", started=0.0)
    if reason is not None:
        ticket.stop(reason)
    return ticket


def final(ticket: JobTicket, result: JobResult | None, leaving: Leaving | None = None) -> JobResult:
    return final_result(
        ticket,
        result,
        leaving=leaving,
        restart_reason="the heartbeat thread stopped",
        fallback_metrics=lambda: FALLBACK,
    )


def test_a_job_that_did_not_stop_in_time_gets_the_fallback_metrics() -> None:
    shutdown = final(stopped(StopReason.SHUTDOWN), None, Leaving.SHUTDOWN)
    restart = final(stopped(StopReason.RESTART), None, Leaving.RESTART)

    assert (shutdown.error_code, shutdown.metrics, shutdown.job_id) == (
        ErrorCode.WORKER_SHUTDOWN,
        FALLBACK,
        "j-1",
    )
    assert restart.error_code is ErrorCode.INTERNAL_ERROR and restart.retryable


def test_jobs_that_ended_on_their_own_are_reported_as_they_ended() -> None:
    assert final(stopped(StopReason.CANCELLED), CANCELLED, Leaving.SHUTDOWN) is CANCELLED
    assert final(stopped(StopReason.SHUTDOWN), SUCCEEDED, Leaving.SHUTDOWN) is SUCCEEDED
    assert final(stopped(None), SUCCEEDED) is SUCCEEDED


def test_a_fatal_failure_is_always_retryable() -> None:
    # Built as the core builds it from an adapter's fatal failure, whose retry decision it carries.
    failure = JobFailure(ErrorCode.GENERATION_FAILED, "CUDA error", retryable=False, fatal=True)
    fatal = JobResult.failure(
        failure.code, failure.message, job_id="j-1", retryable=failure.retryable, fatal=failure.fatal
    )

    result = final(stopped(None), fatal)

    assert result.retryable is True and result.fatal
    assert result.error_code is ErrorCode.GENERATION_FAILED
