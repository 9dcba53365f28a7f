"""The terminal status of a job the worker, not the job, ended; and why a job in hand is stopped."""

from __future__ import annotations

from buffer_worker.ticket import JobTicket, StopReason, final_result
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


def final(ticket: JobTicket, result: JobResult | None, restart_reason: str | None = None) -> JobResult:
    return final_result(ticket, result, restart_reason=restart_reason, fallback_metrics=lambda: FALLBACK)


def test_a_job_that_did_not_stop_in_time_gets_the_fallback_metrics() -> None:
    shutdown = final(stopped(StopReason.SHUTDOWN), None)
    restart = final(stopped(StopReason.RESTART), None, "the heartbeat thread stopped")

    assert (shutdown.error_code, shutdown.metrics, shutdown.job_id) == (
        ErrorCode.WORKER_SHUTDOWN,
        FALLBACK,
        "j-1",
    )
    assert restart.error_code is ErrorCode.INTERNAL_ERROR and restart.retryable
    assert restart.error == "the worker is restarting: the heartbeat thread stopped"


def test_jobs_that_ended_on_their_own_are_reported_as_they_ended() -> None:
    assert final(stopped(StopReason.CANCELLED), CANCELLED) is CANCELLED
    assert final(stopped(StopReason.SHUTDOWN), SUCCEEDED) is SUCCEEDED
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


def test_the_first_reason_to_stop_stands_and_tells_the_core_how_to_report_the_job() -> None:
    for reason, code, message in [
        (StopReason.CANCELLED, ErrorCode.CANCELLED, "job cancelled by the orchestrator"),
        (StopReason.LEASE_LOST, ErrorCode.CANCELLED, "job cancelled"),
        (StopReason.SHUTDOWN, ErrorCode.WORKER_SHUTDOWN, "the worker is shutting down"),
        (StopReason.RESTART, ErrorCode.INTERNAL_ERROR, "the worker is restarting: the heartbeat thread died"),
    ]:
        held = JobTicket("b-1", "j-1", started=0.0)
        assert not held.cancellation.is_set()
        assert held.stop(reason, detail="the heartbeat thread died")
        assert not held.stop(StopReason.CANCELLED)
        assert held.reason is reason
        assert held.cancellation.is_set() and held.cancellation.code is code
        assert held.cancellation.message.startswith(message)
