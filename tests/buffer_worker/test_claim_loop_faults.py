"""The claim loop against a hostile or flaky orchestrator (issue 18): `running` refused, statuses
left from the last run refused, an answer dripped a byte at a time, ids it cannot use, and the
same job handed out twice. In-process, as ``test_worker.py``, against the orchestrator double.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.orchestrator import ClaimJournal, RetryPolicy, StatusOutbox
from fastwan_adapters.testing import Endpoint, Fault, OrchestratorDouble
from fastwan_core import ErrorCode, JobFailure, JobState
from fastwan_core.testing import FakeGenerator

from .harness import claimed_earlier
from .rig import JOB, TIMEOUT, Rig, add, claimed_after

BEAT_S = 0.05  # the rig's heartbeat interval


def outbox_holds(tmp_path: Path, buffer_job_id: str) -> bool:
    return (tmp_path / "state" / "status-outbox" / f"{buffer_job_id}.status.json").exists()


def eventually(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# -- finding 3: a finished job's status is in the outbox at once, `running` or not --------------


def test_a_finished_job_whose_running_is_refused_has_its_status_in_the_outbox_at_once(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, tmp_path: Path
) -> None:
    orch.refuse(500, status="running")
    rig = make_rig(running_after_end_s=1.5).start()
    buffer_job_id = add(orch, "j-refused-running")

    assert eventually(lambda: outbox_holds(tmp_path, buffer_job_id)), "no terminal status in the outbox"
    assert orch.terminal_statuses(buffer_job_id) == []  # still waiting for `running` to go first
    # The outbox answers for the job: the journal lets go right after the outbox write.
    assert eventually(lambda: ClaimJournal(tmp_path / "state").orphans() == []), "still in the journal"
    (entry,) = StatusOutbox(tmp_path / "state").pending()
    assert entry.body["status"] == "succeeded"

    # `running` is given up after running_after_end_s: the status goes alone, the worker goes on.
    following = add(orch, "j-next")
    rig.wait(rig.ended(following), "the next job to end")
    rig.request_stop()
    assert rig.join() is ExitCode.OK
    assert [s["status"] for s in orch.statuses(buffer_job_id)] == ["succeeded"]
    assert not outbox_holds(tmp_path, buffer_job_id)


def test_a_lease_lost_to_a_late_running_drops_the_status_from_the_outbox_unsent(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, tmp_path: Path
) -> None:
    orch.fail_next(Endpoint.STATUS, Fault.delayed(1.0))  # `running` answered after the job ended
    rig = make_rig().start()
    buffer_job_id = add(orch, "j-late-409")
    assert eventually(lambda: outbox_holds(tmp_path, buffer_job_id)), "no terminal status in the outbox"
    orch.take_away(buffer_job_id, 409)

    rig.wait(lambda o: claimed_after(o, buffer_job_id), "a claim after the 409")
    rig.request_stop()
    rig.join()

    assert [s["status"] for s in orch.statuses(buffer_job_id, recorded_only=False)] == ["running"]
    assert not outbox_holds(tmp_path, buffer_job_id)


# -- finding 5: heartbeats from the first second while old statuses are refused ------------------


def leave_statuses(orch: OrchestratorDouble, tmp_path: Path, count: int) -> list[str]:
    """``count`` jobs an earlier run claimed and ended, their statuses still in its outbox."""
    ids = [add(orch, f"left-{n}") for n in range(count)]
    outbox = StatusOutbox(tmp_path / "state")
    for buffer_job_id in ids:
        assert claimed_earlier(orch) is not None
        outbox.put(buffer_job_id, {"status": "succeeded", "output_url": f"memory://{buffer_job_id}"})
    return ids


@pytest.mark.parametrize("count", [1, 300], ids=["one-refused", "300-refused"])
def test_heartbeats_and_claims_go_on_while_the_orchestrator_refuses_the_last_runs_statuses(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, tmp_path: Path, count: int
) -> None:
    refused = leave_statuses(orch, tmp_path, count)
    for buffer_job_id in refused:
        orch.refuse(503, buffer_job_id=buffer_job_id)
    started = time.monotonic()

    rig = make_rig().start()
    assert orch.wait_for(lambda o: bool(o.heartbeats("w-1")), timeout=1.0), "no heartbeat within 1 s"
    first_beat = orch.requests(Endpoint.HEARTBEAT)[0].at
    job = add(orch, "j-meanwhile")
    rig.wait(rig.ended(job), "a job claimed and run meanwhile")
    rig.request_stop()
    assert rig.join() is ExitCode.OK

    assert first_beat - started < 1.0
    beats = [r.at for r in orch.requests(Endpoint.HEARTBEAT)]
    assert max(later - earlier for earlier, later in itertools.pairwise(beats)) < BEAT_S + 0.5
    assert [s["status"] for s in orch.statuses(job)] == ["running", "succeeded"]
    assert all(orch.terminal_statuses(b) == [] for b in refused)
    assert {e.buffer_job_id for e in StatusOutbox(tmp_path / "state").pending()} == set(refused)
    attempts = orch.statuses(refused[0], recorded_only=False)
    assert len(attempts) >= 1  # tried, and still tried in rounds while the worker works


def test_the_last_runs_statuses_the_orchestrator_takes_later_are_delivered_in_the_background(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, tmp_path: Path
) -> None:
    (first, second) = leave_statuses(orch, tmp_path, 2)
    orch.refuse(503, buffer_job_id=first)  # refused for a while; the second is not held up by it

    rig = make_rig(retry=RetryPolicy(initial=0.05, cap=0.2)).start()
    rig.wait(rig.ended(second), "the second leftover")
    rig.wait(lambda o: len(o.statuses(first, recorded_only=False)) >= 2, "a second round")
    orch.clear_refusals()
    rig.wait(rig.ended(first), "the first leftover, once taken")
    assert eventually(lambda: not outbox_holds(tmp_path, first)), "the answer never reached the worker"
    rig.request_stop()
    rig.join()

    assert [s["status"] for s in orch.terminal_statuses(first)] == ["succeeded"]
    assert StatusOutbox(tmp_path / "state").pending() == []


# -- finding 7: a stop abandons a dripping claim -------------------------------------------------


def test_a_stop_during_a_dripping_claim_ends_the_worker_at_once_with_a_stopping_heartbeat(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble
) -> None:
    orch.fail_next(Endpoint.CLAIM, Fault.dripped(0.5))  # each byte beats the 2 s read timeout: a minute
    rig = make_rig(grace=3.0).start()
    rig.wait(lambda o: bool(o.requests(Endpoint.CLAIM)), "the dripping claim")
    time.sleep(0.2)  # well into it

    stopped = time.monotonic()
    rig.request_stop()

    assert rig.join(timeout=5.0) is ExitCode.OK
    assert time.monotonic() - stopped < 2.0
    assert orch.heartbeats("w-1")[-1]["status"] == "stopping"


# -- finding 9: what the worker saw of an unusable id, and a job handed out twice ----------------


def test_a_job_with_an_unusable_buffer_job_id_is_skipped_with_both_ids_as_seen_in_the_log(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="buffer_worker")
    long_id = "x" * 500
    orch.add_job({**JOB, "musetalk_job_id": "j-bad-id"}, buffer_job_id="../escape")
    orch.add_job({**JOB, "musetalk_job_id": long_id}, buffer_job_id="has space")
    following = add(orch, "j-after-bad-ids")
    rig = make_rig().start()

    rig.wait(rig.ended(following), "the next job to end")
    rig.request_stop()
    rig.join()

    lines = [r.getMessage() for r in caplog.records if "usable buffer_job_id" in r.getMessage()]
    assert len(lines) == 2
    assert "buffer_job_id='../escape'" in lines[0] and "musetalk_job_id='j-bad-id'" in lines[0]
    assert "buffer_job_id='has space'" in lines[1] and "musetalk_job_id='xxxx" in lines[1]
    assert long_id not in lines[1] and len(lines[1]) < 300  # cut to a readable length
    assert prompts(rig) == [JOB["prompt"]]  # only the job after them ran
    # The one with a usable musetalk_job_id is failed through progress (issue 23, item 7): the
    # orchestrator no longer waits for its own timeout. No status: it has no id to go under.
    (failed,) = [u for j, u in rig.sent_progress.updates if j == "j-bad-id"]
    assert (failed.status, failed.error_code) == (JobState.FAILED, ErrorCode.INVALID_INPUT)
    assert failed.error is not None and failed.error.startswith("buffer_job_id must be 1 to 128 letters")
    assert "'../escape'" in failed.error
    assert [j for j, _u in rig.sent_progress.updates if j == long_id] == []


def test_a_job_claimed_with_no_buffer_job_id_is_failed_through_progress_naming_the_field(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble
) -> None:
    orch.add_job({**JOB, "musetalk_job_id": "j-no-buffer-id", "width": 5000}, buffer_job_id="x")
    orch._slots["x"].job.pop("buffer_job_id")  # the orchestrator sends none at all (no API for it)
    following = add(orch, "j-after-no-id")
    rig = make_rig().start()

    rig.wait(rig.ended(following), "the next job to end")
    rig.request_stop()
    rig.join()

    (failed,) = [u for j, u in rig.sent_progress.updates if j == "j-no-buffer-id"]
    assert (failed.status, failed.error_code) == (JobState.FAILED, ErrorCode.INVALID_INPUT)
    assert failed.error is not None
    assert failed.error.startswith("buffer_job_id is required in buffer mode; width must be between")


@pytest.mark.parametrize("again", ["at-once", "after-another-job"])
def test_a_finished_job_claimed_again_is_reported_again_from_its_result_not_run_again(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, again: str
) -> None:
    rig = make_rig().start()
    buffer_job_id = add(orch, "j-twice", prompt="twice")
    rig.wait(rig.ended(buffer_job_id), "the job to end")
    if again == "after-another-job":
        other = add(orch, "j-between")
        rig.wait(rig.ended(other), "the job between")
    orch.hand_out_again(buffer_job_id)
    rig.wait(lambda o: len(o.terminal_statuses(buffer_job_id)) == 2, "the status reported again")
    rig.request_stop()
    rig.join()

    first, second = orch.terminal_statuses(buffer_job_id)
    assert second == first and first["status"] == "succeeded"
    assert [s["status"] for s in orch.statuses(buffer_job_id)] == ["running", "succeeded", "succeeded"]
    assert prompts(rig).count("twice") == 1
    finals = [u for j, u in rig.sent_progress.updates if j == "j-twice" and u.is_terminal]
    assert [u.status for u in finals] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    assert finals[-1].output_url == first["output_url"]


def test_a_retryable_failure_claimed_again_is_run_again(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble
) -> None:
    oom = JobFailure(ErrorCode.GPU_OUT_OF_MEMORY, "CUDA out of memory")  # retryable
    rig = make_rig(generator=FakeGenerator(failure=oom, fail_at_step=2)).start()
    buffer_job_id = add(orch, "j-retry", prompt="retry")
    rig.wait(rig.ended(buffer_job_id), "the job to fail")
    orch.hand_out_again(buffer_job_id)  # the orchestrator's retry, under the same id
    rig.wait(lambda o: len(o.terminal_statuses(buffer_job_id)) == 2, "the second run's status")
    rig.request_stop()
    rig.join()

    assert prompts(rig) == ["retry", "retry"]
    assert [s["retryable"] for s in orch.terminal_statuses(buffer_job_id)] == [True, True]


def prompts(rig: Rig) -> list[str]:
    return [plan.prompt for plan, _image in rig.generator.calls]
