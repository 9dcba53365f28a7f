"""The board and the ticket: what each thread hands the others, and the rules on progress."""

from __future__ import annotations

import threading

from buffer_worker.board import JobTicket, StopReason, WorkerBoard
from fastwan_adapters.orchestrator import WorkerStatus
from fastwan_core import ErrorCode, JobResult, JobState, Phase, ProgressUpdate

RUNNING = ProgressUpdate(status=JobState.RUNNING, phase=Phase.DECODING, progress=0.85)
CANCELLED = JobResult.failure(ErrorCode.CANCELLED, "job cancelled", job_id="j-1").progress_update()


def ticket() -> JobTicket:
    return JobTicket("b-1", "j-1", started=10.0)


def test_the_first_reason_to_stop_stands() -> None:
    held = ticket()
    assert not held.is_set()

    assert held.stop(StopReason.CANCELLED)
    assert not held.stop(StopReason.SHUTDOWN)

    assert held.is_set()
    assert (held.reason, held.code, held.message) == (
        StopReason.CANCELLED,
        ErrorCode.CANCELLED,
        "job cancelled by the orchestrator",
    )


def test_only_one_caller_may_report_a_job_even_when_racing() -> None:
    held = ticket()
    wins: list[bool] = []
    threads = [threading.Thread(target=lambda: wins.append(held.claim_report())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(wins) == [False] * 7 + [True]


def test_snapshots_say_idle_busy_with_the_job_then_stopping() -> None:
    board = WorkerBoard()
    held = ticket()
    assert board.snapshot().status is WorkerStatus.IDLE

    board.begin(held)
    assert board.observe("j-1", RUNNING)
    busy = board.snapshot()
    assert (busy.status, busy.current_job_id, busy.phase, busy.progress) == (
        WorkerStatus.BUSY,
        "b-1",
        Phase.DECODING,
        0.85,
    )

    board.stopping()
    board.end(held)
    last = board.snapshot()
    assert (last.status, last.current_job_id, last.phase, last.progress) == (
        WorkerStatus.STOPPING,
        None,
        None,
        None,
    )


def test_a_failure_becomes_the_last_error_until_a_success_clears_it() -> None:
    board = WorkerBoard()
    failed = JobResult.failure(ErrorCode.UPLOAD_FAILED, "B2 answered 503", job_id="j-1")
    board.record(ticket(), failed)
    assert board.snapshot().error == "buffer job b-1: upload_failed: B2 answered 503"

    board.record(ticket(), JobResult(status=JobState.SUCCEEDED, job_id="j-1", output_url="u"))
    assert board.snapshot().error is None


def test_nothing_is_sent_for_a_job_whose_lease_is_lost() -> None:
    board = WorkerBoard()
    held = ticket()
    board.begin(held)
    held.stop(StopReason.LEASE_LOST)

    assert not board.observe("j-1", RUNNING)
    assert not board.observe("j-1", CANCELLED)


def test_a_stopped_job_tells_the_core_how_to_report_it() -> None:
    for reason, code, message in [
        (StopReason.CANCELLED, ErrorCode.CANCELLED, "job cancelled by the orchestrator"),
        (StopReason.SHUTDOWN, ErrorCode.WORKER_SHUTDOWN, "the worker is shutting down"),
        (StopReason.RESTART, ErrorCode.INTERNAL_ERROR, "the worker is restarting: the heartbeat thread died"),
    ]:
        held = ticket()
        assert held.stop(reason, detail="the heartbeat thread died")
        assert not held.stop(StopReason.CANCELLED)
        assert held.is_set() and held.code is code and held.message.startswith(message)


def test_a_silenced_job_sends_nothing_even_after_it_left_the_board() -> None:
    board = WorkerBoard()
    board.silence("j-1")

    assert not board.observe("j-1", CANCELLED)
    assert board.observe("j-2", CANCELLED)
