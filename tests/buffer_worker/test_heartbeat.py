"""The heartbeat, against the orchestrator double over HTTP with the real client: from the first
second to the last, on its cadence, carrying the job in hand, cancelling it when told to."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest

from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.testing import Endpoint, Fault, OrchestratorDouble
from fastwan_core import ErrorCode, JobFailure

from .rig import Rig, add, gated, paced

INTERVAL = 0.05  # the rig's HEARTBEAT_INTERVAL_S


def test_beats_keep_their_cadence_and_a_stop_is_no_death(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig().start()
    assert rig.orch.wait_for(lambda o: len(o.heartbeats("w-1")) >= 12, timeout=5)
    rig.request_stop()

    assert rig.join() is ExitCode.OK  # a heartbeat ended by the worker is not a dead one
    times = [r.at for r in rig.orch.requests(Endpoint.HEARTBEAT)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times[:-1])]  # the last: goodbye
    assert max(gaps) < INTERVAL + 0.5
    assert sum(gaps) / len(gaps) == pytest.approx(INTERVAL, abs=0.03)  # on cadence, not interval + call time
    assert rig.orch.heartbeats("w-1")[0] == {
        "status": "idle",
        "gpu_class": "FakeGPU",
        "capacity": 1,
        "error": None,
        "worker_version": "1.0",
        "restarts": 0,
    }


def test_beats_carry_the_job_in_hand_its_phase_and_progress(make_rig: Callable[..., Rig]) -> None:
    gate = threading.Event()
    rig = make_rig(generator=gated(gate)).start()
    buffer_job_id = add(rig.orch, "j-1")
    try:
        rig.wait(
            lambda o: any(b.get("phase") == "inference" for b in o.heartbeats("w-1")), "a beat in inference"
        )
    finally:
        gate.set()

    busy = next(b for b in rig.orch.heartbeats("w-1") if b.get("phase") == "inference")
    assert busy == {
        "status": "busy",
        "gpu_class": "FakeGPU",
        "capacity": 1,
        "error": None,
        "current_job_id": buffer_job_id,
        "phase": "inference",
        "progress": busy["progress"],
        "worker_version": "1.0",
        "restarts": 0,
    }
    assert 0.0 <= busy["progress"] <= 1.0


@pytest.mark.parametrize("named", ["buffer_job_id", "musetalk_job_id"])
def test_a_cancel_naming_the_job_in_hand_stops_it(make_rig: Callable[..., Rig], named: str) -> None:
    rig = make_rig(generator=paced(0.5)).start()  # the cancel is heard before its second step
    buffer_job_id = add(rig.orch, "j-1")
    rig.wait(rig.running(buffer_job_id), "`running`")

    rig.orch.cancel(buffer_job_id if named == "buffer_job_id" else "j-1", "someone-else")
    rig.wait(rig.ended(buffer_job_id), "the cancelled job's status")

    (final,) = rig.orch.terminal_statuses(buffer_job_id)
    assert (final["status"], final["error_code"]) == ("cancelled", "cancelled")


def test_a_cancel_for_another_job_changes_nothing(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(generator=paced(0.1)).start()  # a few beats while the job is in hand
    rig.orch.cancel("b-other", "j-other")
    buffer_job_id = add(rig.orch, "j-1")

    rig.wait(rig.ended(buffer_job_id), "the job to end")

    assert rig.orch.terminal_statuses(buffer_job_id)[0]["status"] == "succeeded"


def test_a_failed_heartbeat_is_retried_at_the_next_tick(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble
) -> None:
    orch.fail_next(Endpoint.HEARTBEAT, Fault.answer(503), times=2)
    orch.fail_next(Endpoint.HEARTBEAT, Fault.dropped())

    rig = make_rig().start()
    assert orch.wait_for(lambda o: any(r.answered_ok for r in o.requests(Endpoint.HEARTBEAT)), timeout=5)
    rig.request_stop()
    rig.join()

    answers = [r.answer for r in orch.requests(Endpoint.HEARTBEAT)]
    assert answers[:4] == [503, 503, None, 200]


def test_the_final_heartbeat_says_stopping_and_carries_the_last_error(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(load_error=ValueError("a broken start")).start()

    assert rig.join() is ExitCode.RESTART
    assert rig.orch.heartbeats("w-1")[-1] == {
        "status": "stopping",
        "gpu_class": "FakeGPU",
        "capacity": 1,
        "error": "start-up failed: ValueError (see the worker's log)",
        "worker_version": "1.0",
        "restarts": 0,
    }


def test_beats_carry_how_often_the_supervisor_restarted_the_worker(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(env={"BUFFER_WORKER_RESTARTS": "3"}).start()
    rig.wait(lambda o: bool(o.heartbeats("w-1")), "a heartbeat")
    rig.request_stop()
    rig.join()

    assert {beat["restarts"] for beat in rig.orch.heartbeats("w-1")} == {3}


def test_a_failure_is_the_last_error_of_every_beat_until_a_success_clears_it(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    rig.store.failure = JobFailure(ErrorCode.UPLOAD_FAILED, "B2 answered 503")
    rig.start()
    failed = add(rig.orch, "j-fails")
    rig.wait(rig.ended(failed), "the failed job's status")
    error = f"buffer job {failed}: upload_failed: B2 answered 503"
    rig.wait(lambda o: o.heartbeats("w-1")[-1]["error"] == error, "a beat with the error")
    rig.store.failure = None
    succeeded = add(rig.orch, "j-succeeds")
    rig.wait(rig.ended(succeeded), "the next job's status")
    rig.wait(lambda o: o.heartbeats("w-1")[-1]["error"] is None, "a beat without it")
    rig.request_stop()
    rig.join()
