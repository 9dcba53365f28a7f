"""The claim loop in-process: the core's fakes for the model, the real client, outbox and heartbeat
against the orchestrator double. Here the shutdown and restart paths are driven exactly (a step
that waits on an event), which a real generator cannot be made to do on cue.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from buffer_worker.worker import BufferWorker
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.generator import NoGpuError
from fastwan_adapters.orchestrator import ClaimJournal, OrchestratorClient, StatusOutbox
from fastwan_adapters.testing import Endpoint, Fault, OrchestratorDouble
from fastwan_core import ErrorCode, JobFailure, JobState, progress_to_wire
from fastwan_core.testing import FakeGenerator, FakeImageLoader

from .harness import claimed_earlier
from .rig import TIMEOUT, BreakingHeartbeats, Rig, add, claimed_after, gated, paced


def test_a_job_runs_and_its_terminal_status_goes_through_the_outbox(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig().start()
    buffer_job_id = add(rig.orch, "j-1")

    rig.wait(rig.ended(buffer_job_id), "the job to end")
    rig.request_stop()

    assert rig.join() is ExitCode.OK
    assert [s["status"] for s in rig.orch.statuses(buffer_job_id)] == ["running", "succeeded"]
    assert list(rig.store.objects) == ["j-1.mp4"]
    assert rig.outbox.pending() == []
    assert rig.orch.heartbeats("w-1")[-1]["status"] == "stopping"
    claim = rig.orch.claims()[0]
    assert claim == {
        "worker_id": "w-1",
        "gpu_class": "FakeGPU",
        "model_id": "fake/fastwan",
        "worker_version": "1.0",
    }


def test_statuses_left_from_a_previous_run_are_sent_before_anything_else(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, tmp_path: Path
) -> None:
    buffer_job_id = add(orch, "left-over")
    assert claimed_earlier(orch) is not None
    StatusOutbox(tmp_path / "state").put(buffer_job_id, {"status": "succeeded", "output_url": "memory://x"})
    before = len(orch.requests())

    rig = make_rig().start()
    rig.wait(rig.ended(buffer_job_id), "the left-over status")
    rig.wait(lambda o: len(o.requests(Endpoint.CLAIM)) > 1, "a claim of this run")  # one was the last run's
    rig.request_stop()
    rig.join()

    first = orch.requests()[before]
    assert (first.endpoint, first.ident, first.body["status"]) == (
        Endpoint.STATUS,
        buffer_job_id,
        "succeeded",
    )
    assert rig.outbox.pending() == []


def test_after_the_grace_period_a_stopped_job_is_reported_worker_shutdown_with_its_own_metrics(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(generator=paced(0.3), grace=0.1).start()
    buffer_job_id = add(rig.orch, "j-grace")
    rig.wait(rig.running(buffer_job_id), "`running`")

    rig.request_stop()

    assert rig.join() is ExitCode.OK
    (final,) = rig.orch.terminal_statuses(buffer_job_id)
    assert (final["status"], final["error_code"], final["retryable"]) == ("failed", "worker_shutdown", True)
    assert final["metrics"]["steps"] == 3 and "denoise_s" in final["metrics"]["timings"]
    assert len(rig.generator.steps_run) < 3
    terminal_progress = [u for _, u in rig.sent_progress.updates if u.is_terminal]
    assert [(u.status, u.error_code) for u in terminal_progress] == [
        (JobState.FAILED, ErrorCode.WORKER_SHUTDOWN)
    ]
    assert rig.store.objects == {}


def test_a_job_that_finishes_within_the_grace_period_is_reported_as_it_ended(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(generator=paced(0.1), grace=10.0).start()
    buffer_job_id = add(rig.orch, "j-finishes")
    queued = add(rig.orch, "j-never-claimed")
    rig.wait(rig.running(buffer_job_id), "`running`")

    rig.request_stop()

    assert rig.join() is ExitCode.OK
    assert [s["status"] for s in rig.orch.statuses(buffer_job_id)] == ["running", "succeeded"]
    assert rig.orch.job_state(queued) == "queued"


def test_a_job_that_will_not_stop_is_reported_without_it_and_the_worker_leaves(
    make_rig: Callable[..., Rig],
) -> None:
    gate = threading.Event()
    rig = make_rig(generator=gated(gate), grace=0.0, stop_wait=0.2).start()
    buffer_job_id = add(rig.orch, "j-stuck")
    rig.wait(rig.running(buffer_job_id), "`running`")

    rig.request_stop()
    try:
        assert rig.join(timeout=5) is ExitCode.OK
        assert rig.worker.runner.busy  # main then leaves with os._exit, not waiting for it
    finally:
        gate.set()

    (final,) = rig.orch.terminal_statuses(buffer_job_id)
    assert (final["error_code"], final["retryable"]) == ("worker_shutdown", True)
    assert final["metrics"]["worker_id"] == "w-1" and final["metrics"]["duration_sec"] >= 0.2
    terminal = [u.error_code for j, u in rig.sent_progress.updates if j == "j-stuck" and u.is_terminal]
    assert terminal == [ErrorCode.WORKER_SHUTDOWN]


def test_a_restart_during_a_shutdown_stops_the_job_at_once_and_asks_to_be_restarted(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(generator=paced(0.5), grace=30.0, client_class=BreakingHeartbeats).start()
    buffer_job_id = add(rig.orch, "j-restart")
    rig.wait(rig.running(buffer_job_id), "`running`")
    rig.request_stop()  # the job may run on for 30 s

    assert isinstance(rig.client, BreakingHeartbeats)
    rig.client.broken.set()

    assert rig.join() is ExitCode.RESTART
    (final,) = rig.orch.terminal_statuses(buffer_job_id)
    assert (final["error_code"], final["retryable"]) == ("internal_error", True)
    assert final["error"] == "the worker is restarting: the heartbeat thread stopped (KeyError)"


def test_a_status_still_refused_when_the_worker_must_leave_stays_in_the_outbox(
    make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    rig = make_rig(generator=paced(0.3), grace=0.1).start()  # the reports then get 3 + 2 s more
    buffer_job_id = add(rig.orch, "j-unsent")
    rig.wait(rig.running(buffer_job_id), "`running`")
    rig.orch.refuse(503, buffer_job_id=buffer_job_id)

    rig.request_stop()
    started = time.monotonic()
    assert rig.join(timeout=15) is ExitCode.OK

    assert time.monotonic() - started < 0.1 + 3.0 + 2.0 + 2.0
    assert rig.orch.terminal_statuses(buffer_job_id) == []
    (entry,) = StatusOutbox(tmp_path / "state").pending()
    assert (entry.buffer_job_id, entry.body["error_code"]) == (buffer_job_id, "worker_shutdown")


@pytest.fixture
def state_dir_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set: no file can be created under STATE_DIR (ENOSPC), as on a full disk."""
    full = threading.Event()
    state, real_mkstemp = tmp_path / "state", tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        folder = kwargs.get("dir")
        if full.is_set() and folder is not None and Path(folder).is_relative_to(state):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return full


def errors_said(rig: Rig) -> list[str | None]:
    return [beat.get("error") for beat in rig.orch.heartbeats("w-1")]


def test_a_full_state_dir_is_in_every_heartbeat_while_it_lasts_and_the_status_goes_directly(
    make_rig: Callable[..., Rig], state_dir_full: threading.Event
) -> None:
    rig = make_rig().start()
    rig.wait(lambda o: bool(o.heartbeats("w-1")), "a first heartbeat")
    state_dir_full.set()
    buffer_job_id = add(rig.orch, "j-full")

    rig.wait(rig.ended(buffer_job_id), "the status, sent directly")
    full_since = len(errors_said(rig))
    rig.wait(lambda _o: len(errors_said(rig)) > full_since + 3, "a few heartbeats")
    said_while_full = errors_said(rig)[full_since:]
    state_dir_full.clear()
    cleared_at = len(errors_said(rig))
    rig.wait(lambda _o: len(errors_said(rig)) > cleared_at + 2, "heartbeats after")
    rig.request_stop()
    assert rig.join() is ExitCode.OK

    assert [s["status"] for s in rig.orch.terminal_statuses(buffer_job_id)] == ["succeeded"]
    expected = "STATE_DIR cannot be written (No space left on device): statuses are not kept across a crash"
    assert said_while_full and all(said == expected for said in said_while_full), said_while_full
    assert errors_said(rig)[-1] is None  # gone once STATE_DIR can be written again


def test_a_status_neither_kept_nor_taken_is_retried_until_the_stop_deadline_then_the_worker_exits_1(
    make_rig: Callable[..., Rig], state_dir_full: threading.Event, tmp_path: Path
) -> None:
    """Issue 23, finding 4: STATE_DIR full, the orchestrator answering 5xx, SIGTERM: the job's
    succeeded status was dropped with exit 0 and nothing on disk."""
    rig = make_rig(grace=0.5).start()
    rig.wait(lambda o: bool(o.heartbeats("w-1")), "a first heartbeat")
    state_dir_full.set()
    rig.orch.refuse(503, status="succeeded")
    buffer_job_id = add(rig.orch, "j-nowhere")

    def tries(o: OrchestratorDouble) -> int:
        return sum(
            1
            for r in o.requests(Endpoint.STATUS)
            if r.ident == buffer_job_id and r.body["status"] != "running"
        )

    rig.wait(lambda o: tries(o) >= 3, "the status retried")
    rig.request_stop()
    assert rig.join(timeout=20) is ExitCode.RESTART

    assert rig.orch.terminal_statuses(buffer_job_id) == []
    assert tries(rig.orch) > 3  # still retried after the stop, until its deadline
    assert StatusOutbox(tmp_path / "state").pending() == []
    last = rig.orch.heartbeats("w-1")[-1]
    assert last["status"] == "stopping"
    assert "STATE_DIR cannot be written (No space left on device)" in last["error"]
    assert f"the terminal status of buffer job(s) {buffer_job_id} was neither sent nor kept" in last["error"]


def test_a_second_signal_reports_the_job_and_returns_at_once(make_rig: Callable[..., Rig]) -> None:
    gate = threading.Event()
    rig = make_rig(generator=gated(gate), grace=30.0).start()
    buffer_job_id = add(rig.orch, "j-abort")
    rig.wait(rig.running(buffer_job_id), "`running`")
    rig.request_stop()

    started = time.monotonic()
    try:
        rig.stop_now()
        assert rig.join() is ExitCode.OK
        took = time.monotonic() - started
    finally:
        gate.set()

    assert took < 2.0
    (final,) = rig.orch.terminal_statuses(buffer_job_id)
    assert (final["error_code"], final["retryable"]) == ("worker_shutdown", True)
    assert rig.orch.heartbeats("w-1")[-1]["status"] == "stopping"
    assert len(rig.orch.terminal_statuses(buffer_job_id)) == 1


def test_a_dead_heartbeat_fails_the_job_retryable_and_the_worker_exits_to_be_restarted(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(generator=paced(0.5), client_class=BreakingHeartbeats).start()
    buffer_job_id = add(rig.orch, "j-orphan")
    rig.wait(rig.running(buffer_job_id), "`running`")

    assert isinstance(rig.client, BreakingHeartbeats)
    rig.client.broken.set()

    assert rig.join() is ExitCode.RESTART
    (final,) = rig.orch.terminal_statuses(buffer_job_id)
    assert (final["status"], final["error_code"], final["retryable"]) == ("failed", "internal_error", True)
    assert "heartbeat" in final["error"]


def test_an_unusable_gpu_fails_the_job_retryable_and_the_worker_exits_to_be_restarted(
    make_rig: Callable[..., Rig],
) -> None:
    cuda = JobFailure(ErrorCode.GENERATION_FAILED, "CUDA error: an illegal memory access", fatal=True)
    rig = make_rig(generator=FakeGenerator(failure=cuda, fail_at_step=2)).start()
    buffer_job_id = add(rig.orch, "j-cuda")
    queued = add(rig.orch, "j-next")

    assert rig.join() is ExitCode.RESTART

    (final,) = rig.orch.terminal_statuses(buffer_job_id)
    assert (final["status"], final["error_code"], final["retryable"]) == ("failed", "generation_failed", True)
    assert [u.error_code for _, u in rig.sent_progress.updates if u.is_terminal] == [
        ErrorCode.GENERATION_FAILED
    ]
    assert rig.orch.job_state(queued) == "queued"


def test_a_model_that_cannot_load_is_a_configuration_error_told_to_the_orchestrator(
    make_rig: Callable[..., Rig],
) -> None:
    no_gpu = NoGpuError("FASTWAN_MODEL names a real model and there is no CUDA GPU")
    rig = make_rig(load_error=no_gpu).start()

    assert rig.join() is ExitCode.CONFIG
    assert rig.orch.claims() == []
    last = rig.orch.heartbeats("w-1")[-1]
    assert last["status"] == "stopping"
    assert last["error"] == "cannot start: FASTWAN_MODEL names a real model and there is no CUDA GPU"


class _StopsOnClaim(OrchestratorClient):
    """The claim answers just as the stop signal comes: the job is claimed by a stopping worker."""

    worker: BufferWorker | None = None

    async def claim_with_backoff(self, worker_id: str, **options: Any) -> dict[str, Any] | None:
        job = await super().claim_with_backoff(worker_id, **options)
        if job is not None and self.worker is not None:
            self.worker.stop()
        return job


def test_a_job_claimed_while_stopping_is_handed_back_as_worker_shutdown(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(client_class=_StopsOnClaim)
    assert isinstance(rig.client, _StopsOnClaim)
    rig.client.worker = rig.worker
    rig.start()
    buffer_job_id = add(rig.orch, "j-late")

    assert rig.join() is ExitCode.OK

    assert [s["status"] for s in rig.orch.statuses(buffer_job_id)] == ["failed"]
    assert rig.orch.terminal_statuses(buffer_job_id)[0]["error_code"] == "worker_shutdown"
    assert rig.generator.calls == []


def orphaned(orch: OrchestratorDouble, tmp_path: Path, job_id: str) -> str:
    """A job the worker's previous run (``w-1``) claimed and died with: still in its claim journal."""
    buffer_job_id = add(orch, job_id)
    assert claimed_earlier(orch) is not None
    ClaimJournal(tmp_path / "state").record(buffer_job_id, job_id)
    return buffer_job_id


def test_a_job_left_in_the_claim_journal_is_reported_failed_retryable_once_before_the_first_claim(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, tmp_path: Path
) -> None:
    orphan = orphaned(orch, tmp_path, "orphan")
    before = len(orch.requests())

    rig = make_rig().start()
    rig.wait(rig.ended(orphan), "the orphan's status")
    rig.wait(lambda o: len(o.requests(Endpoint.CLAIM)) > 1, "a claim of this run")  # one was the last run's
    rig.request_stop()
    rig.join()
    claims = len(orch.requests(Endpoint.CLAIM))
    again = make_rig().start()  # a second restart reports nothing more
    again.wait(lambda o: len(o.requests(Endpoint.CLAIM)) > claims, "a claim of the second restart")
    again.request_stop()
    again.join()

    first = orch.requests()[before]
    assert (first.endpoint, first.ident) == (Endpoint.STATUS, orphan)
    assert [
        (s["status"], s["error_code"], s["retryable"]) for s in orch.statuses(orphan, recorded_only=False)
    ] == [("failed", "worker_shutdown", True)]
    assert orch.statuses(orphan)[0]["metrics"]["worker_id"] == "w-1"
    assert [u.error_code for j, u in rig.sent_progress.updates if j == "orphan"] == [
        ErrorCode.WORKER_SHUTDOWN
    ]
    assert ClaimJournal(tmp_path / "state").orphans() == []


def test_an_orphan_whose_job_is_no_longer_ours_gets_no_final_progress(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, tmp_path: Path
) -> None:
    # Killed mid-job, restarted late: meanwhile the lease ran out and another worker finished
    # the job. The orphan's status is answered 409; nothing at all may be said for the job then
    # (issue 21: the orchestrator got `failed` progress after `succeeded`).
    orphan = orphaned(orch, tmp_path, "finished-elsewhere")
    orch.take_away(orphan, status=409)

    rig = make_rig().start()
    rig.wait(lambda o: bool(o.statuses(orphan, recorded_only=False)), "the orphan's status")
    rig.wait(lambda o: len(o.requests(Endpoint.CLAIM)) > 1, "a claim of this run")  # one was the last run's
    rig.request_stop()
    rig.join()

    assert [s["status"] for s in orch.statuses(orphan, recorded_only=False)] == ["failed"]
    assert rig.sent_progress.for_job("finished-elsewhere") == []
    assert ClaimJournal(tmp_path / "state").orphans() == []


def test_an_orphans_final_progress_waits_for_its_status_to_be_taken(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, tmp_path: Path
) -> None:
    orphan = orphaned(orch, tmp_path, "refused-first")
    orch.refuse(503, buffer_job_id=orphan)

    rig = make_rig().start()
    rig.wait(lambda o: len(o.statuses(orphan, recorded_only=False)) >= 2, "two refused tries")
    assert rig.sent_progress.for_job("refused-first") == []  # not while its status is refused
    orch.clear_refusals()
    rig.wait(rig.ended(orphan), "the orphan's status taken")
    deadline = time.monotonic() + TIMEOUT
    while not rig.sent_progress.for_job("refused-first") and time.monotonic() < deadline:
        time.sleep(0.01)
    rig.request_stop()
    rig.join()

    assert [(u.status.value, u.error_code) for u in rig.sent_progress.for_job("refused-first")] == [
        ("failed", ErrorCode.WORKER_SHUTDOWN)
    ]


def test_an_orphans_cleanup_removes_only_what_its_dead_run_left_never_a_finished_or_live_write(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, tmp_path: Path
) -> None:
    # OUTPUT_DIR is shared by the supervisor's workers: while this worker was down, a sibling
    # claimed the job again; it finished it once (the video and its sidecar) and is writing it
    # again right now (its temp files, fresh). Only the dead run's temp file may go.
    orphan = orphaned(orch, tmp_path, "shared")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    finished = [outputs / "shared.mp4", outputs / "shared.mp4.json"]
    live = [outputs / ".shared.mp4.live0001.tmp", outputs / ".shared.mp4.json.live0002.tmp"]
    dead = outputs / ".shared.mp4.dead0001.tmp"
    for path in [*finished, *live, dead]:
        path.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    os.utime(dead, (an_hour_ago, an_hour_ago))  # last written before this process started

    rig = make_rig().start()
    rig.wait(rig.ended(orphan), "the orphan's status")
    rig.request_stop()
    rig.join()

    assert not dead.exists()
    assert [path for path in [*finished, *live] if not path.exists()] == []


def test_a_claim_whose_status_reached_the_outbox_before_the_crash_is_sent_as_written_only(
    make_rig: Callable[..., Rig], orch: OrchestratorDouble, tmp_path: Path
) -> None:
    buffer_job_id = orphaned(orch, tmp_path, "written")
    StatusOutbox(tmp_path / "state").put(buffer_job_id, {"status": "succeeded", "output_url": "memory://x"})

    rig = make_rig().start()
    rig.wait(lambda o: len(o.requests(Endpoint.CLAIM)) > 1, "a claim of this run")  # one was the last run's
    rig.request_stop()
    rig.join()

    assert [s["status"] for s in orch.statuses(buffer_job_id, recorded_only=False)] == ["succeeded"]
    assert ClaimJournal(tmp_path / "state").orphans() == []


def test_the_claim_journal_holds_the_job_in_hand_and_lets_go_once_it_is_reported(
    make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    gate = threading.Event()
    rig = make_rig(generator=gated(gate)).start()
    buffer_job_id = add(rig.orch, "held")
    rig.wait(rig.running(buffer_job_id), "`running`")

    assert [(e.buffer_job_id, e.musetalk_job_id) for e in ClaimJournal(tmp_path / "state").orphans()] == [
        (buffer_job_id, "held")
    ]
    gate.set()
    rig.wait(rig.ended(buffer_job_id), "the job to end")
    assert ClaimJournal(tmp_path / "state").orphans() == []
    lost = add(rig.orch, "lost")
    rig.orch.take_away(lost)  # 409 on `running`: the job is no longer ours
    rig.wait(lambda o: claimed_after(o, lost), "a claim after the 409")
    rig.request_stop()
    rig.join()
    assert ClaimJournal(tmp_path / "state").orphans() == []


# -- the names the orchestrator parses from its sibling worker, beside ours -------------------------


@pytest.mark.parametrize(
    ("failure", "where", "error_type", "stage"),
    [
        (
            JobFailure(ErrorCode.IMAGE_FETCH_FAILED, "image host answered 404", retryable=False),
            "images",
            "media_error",
            "download",
        ),
        (
            JobFailure(ErrorCode.GPU_OUT_OF_MEMORY, "CUDA out of memory"),
            "generator",
            "processing_error",
            "inference",
        ),
    ],
    ids=["refused-image", "retryable"],
)
def test_a_failed_status_carries_the_sibling_names_and_its_final_progress_the_metrics(
    make_rig: Callable[..., Rig], failure: JobFailure, where: str, error_type: str, stage: str
) -> None:
    generator = FakeGenerator(failure=failure, fail_at_step=2) if where == "generator" else None
    images = FakeImageLoader(failure=failure) if where == "images" else None
    rig = make_rig(generator=generator, images=images).start()
    buffer_job_id = add(rig.orch, "j-sib", image_url="https://images.example/face.png")

    rig.wait(rig.ended(buffer_job_id), "the job to end")
    rig.request_stop()
    rig.join()

    (final,) = rig.orch.terminal_statuses(buffer_job_id)
    assert (final["status"], final["error_code"], final["retryable"]) == (
        "failed",
        failure.code.value,
        failure.retryable,
    )
    assert (final["musetalk_job_id"], final["error_type"], final["stage"]) == ("j-sib", error_type, stage)
    assert final["error_message"] == final["error"] == failure.message
    assert final["stage_times"] == final["metrics"]["stage_times"]
    assert "download" in final["stage_times"]
    assert final["metrics"]["total_time"] == final["metrics"]["duration_sec"]
    (last,) = [u for _, u in rig.sent_progress.updates if u.is_terminal]
    assert progress_to_wire(last)["metrics"] == final["metrics"]


def test_a_status_the_worker_writes_itself_carries_the_sibling_names(make_rig: Callable[..., Rig]) -> None:
    gate = threading.Event()
    rig = make_rig(generator=gated(gate), grace=0.0, stop_wait=0.2).start()
    buffer_job_id = add(rig.orch, "j-stuck-sib")
    rig.wait(rig.running(buffer_job_id), "`running`")

    rig.request_stop()
    try:
        rig.join(timeout=5)
    finally:
        gate.set()

    (final,) = rig.orch.terminal_statuses(buffer_job_id)
    assert (final["musetalk_job_id"], final["error_type"], final["stage"]) == (
        "j-stuck-sib",
        "processing_error",
        "unknown",  # the job never came back to say where it was
    )
    assert final["metrics"]["gpu_class"] == "FakeGPU"


# -- a stop while the video decodes --------------------------------------------------------------


def stopping_in_chunk_2(trigger: Callable[[], None], stopped: Callable[[], bool]) -> FakeGenerator:
    """A generator whose second decode chunk lasts until the stop has reached the worker."""

    def on_chunk(index: int) -> None:
        if index == 2:
            trigger()
            deadline = time.monotonic() + TIMEOUT
            while not stopped() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)  # the worker's own reaction to what it heard: a cancellation set

    return FakeGenerator(on_chunk=on_chunk)


@pytest.mark.parametrize("reason", ["cancel", "lease_lost", "shutdown"])
def test_a_stop_during_decode_takes_effect_within_one_chunk_and_nothing_is_stored(
    make_rig: Callable[..., Rig], reason: str
) -> None:
    box: dict[str, Any] = {}

    def heard() -> bool:
        rig, job = box["rig"], box["job"]
        if reason == "cancel":
            return any(r.answer == 200 for r in rig.orch.requests(Endpoint.HEARTBEAT) if r.at > box["at"])
        if reason == "lease_lost":
            return any(r.answer == 409 for r in rig.orch.requests(Endpoint.STATUS) if r.ident == job)
        return True

    def trigger() -> None:
        rig, job = box["rig"], box["job"]
        box["at"] = time.monotonic()
        if reason == "cancel":
            rig.orch.cancel("j-decode")
        elif reason == "lease_lost":
            rig.orch.take_away(job, 409)  # the delayed `running` is answered 409 now
        else:
            rig.request_stop()

    rig = make_rig(generator=stopping_in_chunk_2(trigger, heard), grace=0.0)
    box["rig"] = rig
    if reason == "lease_lost":
        rig.orch.fail_next(Endpoint.STATUS, Fault.delayed(0.5))  # `running` arrives mid-decode
    rig.start()
    box["job"] = job = add(rig.orch, "j-decode", num_frames=17)  # five decode chunks
    if reason == "lease_lost":
        assert rig.orch.wait_for(lambda o: rig.generator.chunks_decoded != [], TIMEOUT)
        rig.orch.wait_for(lambda o: False, 2.0)
    else:
        rig.wait(rig.ended(job), "the stopped job's status")

    assert rig.generator.chunks_decoded == [1, 2]  # chunk 3 never decoded
    assert rig.store.objects == {}
    if reason == "cancel":
        (final,) = rig.orch.terminal_statuses(job)
        assert (final["status"], final["error_code"]) == ("cancelled", "cancelled")
        assert "decode_s" in final["metrics"]["timings"]
    elif reason == "shutdown":
        (final,) = rig.orch.terminal_statuses(job)
        assert (final["status"], final["error_code"]) == ("failed", "worker_shutdown")
        assert rig.join() is ExitCode.OK
    else:
        assert rig.orch.terminal_statuses(job) == []  # not ours any more: nothing reported
        assert not [u for j, u in rig.sent_progress.updates if j == "j-decode" and u.is_terminal]
