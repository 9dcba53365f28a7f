"""The buffer worker as Vast.ai runs it: a process, the orchestrator (double) over HTTP, the tiny
model, local storage. Each test reads what the orchestrator recorded and what was stored.

One worker process serves the tests that do not end it (it takes seconds to start); the tests
about start-up, signals and restarts have their own.
"""

from __future__ import annotations

import hashlib
import itertools
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastwan_adapters.testing import Endpoint, Fault, OrchestratorDouble

from .harness import (
    HEARTBEAT_INTERVAL_S,
    SMALL_JOB,
    START_TIMEOUT_S,
    WorkerProcess,
    decoded_frames,
    ended,
    ready,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow

FULL_METRICS = {
    "duration_sec",
    "peak_vram_gb",
    "fps",
    "timings",
    "steps",
    "seed",
    "model_id",
    "generated_size",
    "output_size",
    "num_frames",
    "video_fps",
    "size_bytes",
    "sha1",
    "worker_id",
    "gpu_name",
    "worker_version",
    "attention",  # the tiny model has no VSA gates: "dense", and no vsa_sparsity
    # the names the orchestrator parses from its sibling worker
    "gpu_class",
    "total_time",
    "stage_times",
    "vae_decoder",
    "encoder",
    "prompt_cache",
}
T2V_TIMINGS = {"text_encode_s", "denoise_s", "decode_s", "encode_s", "encode_tail_s", "upload_s", "total_s"}


def job(job_id: str, **fields: Any) -> dict[str, Any]:
    return {**SMALL_JOB, "musetalk_job_id": job_id, **fields}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def terminal_attempts(orch: OrchestratorDouble, buffer_job_id: str) -> list[Any]:
    return [
        body
        for body in orch.statuses(buffer_job_id, recorded_only=False)
        if body.get("status") in ("succeeded", "failed", "cancelled")
    ]


# -- one worker for the steady-state tests ---------------------------------------------------


class Steady:
    def __init__(self, orch: OrchestratorDouble, worker: WorkerProcess, outputs: Path, metrics_port: int):
        self.orch, self.worker, self.outputs, self.metrics_port = orch, worker, outputs, metrics_port


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Iterator[Steady]:
    tmp = tmp_path_factory.mktemp("steady")
    port = free_port()
    with OrchestratorDouble() as orch:
        env = worker_env(orch, tmp, tiny_dir, METRICS_PORT=str(port))
        with WorkerProcess(env, tmp / "worker.log") as worker:
            wait_until(orch, ready, worker, START_TIMEOUT_S, "the first claim")
            yield Steady(orch, worker, tmp / "outputs", port)
            worker.signal(signal.SIGTERM)
            assert worker.wait(30) == 0, worker.log()


def test_jobs_are_claimed_and_completed_in_order_with_a_decodable_video_and_full_metrics(
    steady: Steady,
) -> None:
    orch = steady.orch
    ids = [orch.add_job(job(f"order-{n}", seed=n)) for n in range(3)]

    wait_until(orch, ended(*ids), steady.worker, what="three jobs to end")

    status_requests = [r for r in orch.requests(Endpoint.STATUS) if r.ident in ids]
    terminal_order = [r.ident for r in status_requests if r.body["status"] == "succeeded"]
    assert terminal_order == ids
    for n, buffer_job_id in enumerate(ids):
        assert [s["status"] for s in orch.statuses(buffer_job_id)] == ["running", "succeeded"]
        (final,) = orch.terminal_statuses(buffer_job_id)
        video = steady.outputs / f"order-{n}.mp4"
        assert final["output_url"] == video.resolve().as_uri()
        assert decoded_frames(video) == (5, 256, 256, "h264")
        metrics = final["metrics"]
        assert set(metrics) == FULL_METRICS
        assert metrics["attention"] == "dense"
        assert set(metrics["timings"]) == T2V_TIMINGS
        assert metrics["size_bytes"] == video.stat().st_size
        assert metrics["sha1"] == hashlib.sha1(video.read_bytes()).hexdigest()
        assert (metrics["seed"], metrics["steps"], metrics["num_frames"], metrics["video_fps"]) == (
            n,
            3,
            5,
            24,
        )
        assert (metrics["worker_id"], metrics["model_id"]) == ("vast-test", "tiny")
        cache = "miss" if n == 0 else "hit"  # one prompt for the three jobs
        assert (metrics["vae_decoder"], metrics["encoder"], metrics["prompt_cache"]) == (
            "full",
            "libx264",
            cache,
        )
        assert final["worker_id"] == "vast-test"
        assert final["musetalk_job_id"] == f"order-{n}"
        assert metrics["total_time"] == metrics["duration_sec"]
        assert set(metrics["stage_times"]) == {"text_encode", "inference", "decode", "encode", "upload"}
        assert metrics["gpu_class"] == "Test GPU"  # GPU_CLASS, as in heartbeats
        progress = orch.progress(f"order-{n}")
        assert progress[-1] == {
            "status": "succeeded",
            "progress": 1.0,
            "output_url": final["output_url"],
            "worker_id": "vast-test",
            "metrics": metrics,
        }


def generation_seconds(final: dict[str, Any]) -> float:
    return float(sum(final["metrics"]["timings"][k] for k in ("text_encode_s", "denoise_s", "decode_s")))


def test_heartbeats_keep_their_cadence_while_a_job_runs(steady: Steady) -> None:
    orch = steady.orch
    # The tiny model's speed depends on the machine and its load: grow the job until one
    # generation spans three heartbeat intervals, so that the gaps are measured under load.
    for attempt, (frames, side) in enumerate([(17, 256), (33, 256), (33, 512)]):
        buffer_job_id = orch.add_job(job(f"cadence-{attempt}", num_frames=frames, width=side, height=side))
        wait_until(orch, ended(buffer_job_id), steady.worker, what="the job to end")
        (final,) = orch.terminal_statuses(buffer_job_id)
        if generation_seconds(final) >= 3 * HEARTBEAT_INTERVAL_S:
            break
    assert generation_seconds(final) >= 3 * HEARTBEAT_INTERVAL_S, "no job spanned three intervals"

    statuses = [r for r in orch.requests(Endpoint.STATUS) if r.ident == buffer_job_id]
    claimed_at = max(r.at for r in orch.requests(Endpoint.CLAIM) if r.at <= statuses[0].at)
    ended_at = statuses[-1].at
    beats = orch.requests(Endpoint.HEARTBEAT)
    around = [
        r
        for r in beats
        if claimed_at - HEARTBEAT_INTERVAL_S * 2 <= r.at <= ended_at + HEARTBEAT_INTERVAL_S * 2
    ]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(around)]
    assert max(gaps) <= HEARTBEAT_INTERVAL_S + 0.5, gaps
    during = [r.body for r in beats if claimed_at < r.at < ended_at]
    assert len(during) >= 3
    busy = [b for b in during if b["status"] == "busy"]
    assert busy and all(b["current_job_id"] == buffer_job_id for b in busy)
    assert {b.get("phase") for b in busy} & {"inference", "decoding"}
    assert all(b["gpu_class"] == "Test GPU" and b["capacity"] == 1 for b in during)


def test_an_invalid_job_fails_with_invalid_input_and_the_worker_takes_the_next(steady: Steady) -> None:
    orch = steady.orch
    bad = orch.add_job(job("too-wide", width=2000))
    good = orch.add_job(job("after-bad"))

    wait_until(orch, ended(bad, good), steady.worker, what="both jobs to end")

    (failure,) = orch.statuses(bad)  # no `running`: the job never started
    assert failure["status"] == "failed"
    assert failure["error_code"] == "invalid_input" and failure["retryable"] is False
    assert "width must be between 256 and 1280, got 2000" in failure["error"]
    assert (failure["musetalk_job_id"], failure["error_type"], failure["stage"]) == (
        "too-wide",
        "media_error",
        "validation",
    )
    assert failure["error_message"] == failure["error"] and failure["stage_times"] == {}
    assert orch.progress("too-wide")[-1]["metrics"] == failure["metrics"]
    assert [s["status"] for s in orch.statuses(good)] == ["running", "succeeded"]


def test_a_job_the_orchestrator_cancels_stops_uploads_nothing_and_is_reported_cancelled(
    steady: Steady,
) -> None:
    orch = steady.orch
    orch.cancel("cancel-me")
    try:
        cancelled = orch.add_job(job("cancel-me", num_frames=17))
        wait_until(orch, ended(cancelled), steady.worker, what="the cancelled job to end")
    finally:
        orch.clear_cancels()
    following = orch.add_job(job("after-cancel"))
    wait_until(orch, ended(following), steady.worker, what="the next job to end")

    (final,) = orch.terminal_statuses(cancelled)
    assert (final["status"], final["error_code"], final["retryable"]) == ("cancelled", "cancelled", False)
    assert "output_url" not in final
    assert not (steady.outputs / "cancel-me.mp4").exists()
    assert orch.progress("cancel-me")[-1]["status"] == "cancelled"
    assert orch.terminal_statuses(following)[0]["status"] == "succeeded"


def test_a_lost_lease_stops_the_job_reports_nothing_and_the_worker_goes_on(steady: Steady) -> None:
    orch = steady.orch
    lost = orch.add_job(job("lost-lease", num_frames=17))
    orch.take_away(lost, 409)
    following = orch.add_job(job("after-lost"))

    wait_until(orch, ended(following), steady.worker, what="the next job to end")

    assert [s["status"] for s in orch.statuses(lost, recorded_only=False)] == ["running"]
    assert not (steady.outputs / "lost-lease.mp4").exists()
    assert all(p["status"] == "running" for p in orch.progress("lost-lease"))
    assert [s["status"] for s in orch.statuses(following)] == ["running", "succeeded"]


def test_bursts_of_5xx_on_status_end_in_exactly_one_recorded_terminal_status(steady: Steady) -> None:
    orch = steady.orch
    orch.fail_next(Endpoint.STATUS, Fault.answer(503), times=2)
    orch.fail_next(Endpoint.STATUS, Fault.answer(502), times=2)
    buffer_job_id = orch.add_job(job("bursty"))

    wait_until(orch, ended(buffer_job_id), steady.worker, what="the job to end")

    sent = orch.statuses(buffer_job_id, recorded_only=False)
    assert len(sent) == 6  # the four failures were this job's
    assert [s["status"] for s in orch.statuses(buffer_job_id)] == ["running", "succeeded"]


def test_prometheus_metrics_count_the_jobs(steady: Steady) -> None:
    page = httpx.get(f"http://127.0.0.1:{steady.metrics_port}/metrics", timeout=5).text

    succeeded = next(
        float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line.startswith('fastwan_buffer_jobs_total{error_code="",status="succeeded"}')
    )
    assert succeeded >= 3
    assert 'fastwan_buffer_jobs_total{error_code="invalid_input",status="failed"} 1.0' in page
    assert "fastwan_buffer_ready 1.0" in page


# -- workers of their own ----------------------------------------------------------------------


def test_the_orchestrator_down_at_start_and_mid_job_every_job_ends_with_one_terminal_status(
    orch: OrchestratorDouble, tmp_path: Path, tiny_dir: Path
) -> None:
    for endpoint in (Endpoint.HEARTBEAT, Endpoint.CLAIM):
        orch.fail_next(endpoint, Fault.dropped(), times=4)
    first = orch.add_job(job("outage-1", num_frames=9))
    second = orch.add_job(job("outage-2"))

    with WorkerProcess(worker_env(orch, tmp_path, tiny_dir), tmp_path / "worker.log") as worker:
        wait_until(orch, lambda o: o.statuses(first), worker, START_TIMEOUT_S, "`running` of the first job")
        for endpoint in (Endpoint.STATUS, Endpoint.PROGRESS, Endpoint.HEARTBEAT, Endpoint.CLAIM):
            orch.fail_next(endpoint, Fault.dropped(), times=3)
        wait_until(orch, ended(first, second), worker, what="both jobs to end")
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0

    dropped_claims = [r for r in orch.requests(Endpoint.CLAIM) if r.answer is None]
    assert len(dropped_claims) >= 4
    assert any(r.answer is None for r in orch.requests(Endpoint.STATUS) if r.ident == first)
    for buffer_job_id in (first, second):
        assert [s["status"] for s in orch.terminal_statuses(buffer_job_id)] == ["succeeded"]


def test_sigterm_mid_job_exits_0_with_the_job_finished_or_reported_worker_shutdown(
    orch: OrchestratorDouble, tmp_path: Path, tiny_dir: Path
) -> None:
    buffer_job_id = orch.add_job(job("sigterm", num_frames=17))
    env = worker_env(orch, tmp_path, tiny_dir, SHUTDOWN_GRACE_S="0.3")

    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        wait_until(orch, lambda o: o.statuses(buffer_job_id), worker, START_TIMEOUT_S, "`running`")
        worker.signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        assert worker.wait(30) == 0, worker.log()

    (final,) = orch.terminal_statuses(buffer_job_id)
    if final["status"] == "failed":
        assert (final["error_code"], final["retryable"]) == ("worker_shutdown", True)
        assert "metrics" in final
        assert orch.progress("sigterm")[-1]["error_code"] == "worker_shutdown"
    else:
        assert final["status"] == "succeeded"
    assert orch.heartbeats()[-1]["status"] == "stopping"
    late_claims = [r for r in orch.requests(Endpoint.CLAIM) if r.at > signalled_at + 0.5]
    assert late_claims == []


def test_sigkill_after_generation_then_a_restart_delivers_the_status_from_the_outbox_once(
    orch: OrchestratorDouble, tmp_path: Path, tiny_dir: Path
) -> None:
    buffer_job_id = orch.add_job(job("crash"))
    env = worker_env(orch, tmp_path, tiny_dir)
    outbox = tmp_path / "state" / "status-outbox" / f"{buffer_job_id}.status.json"

    with WorkerProcess(env, tmp_path / "first.log") as first:
        wait_until(orch, lambda o: o.statuses(buffer_job_id), first, START_TIMEOUT_S, "`running`")
        # Five failures: retries 0.1 s apart, doubling, leave over a second to kill it in.
        orch.fail_next(Endpoint.STATUS, Fault.answer(503), times=5)
        wait_until(
            orch, lambda o: terminal_attempts(o, buffer_job_id), first, what="a terminal status attempt"
        )
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    assert outbox.exists()
    assert orch.terminal_statuses(buffer_job_id) == []
    video = tmp_path / "outputs" / "crash.mp4"
    produced = video.read_bytes()

    with WorkerProcess(env, tmp_path / "second.log") as second:
        wait_until(orch, ended(buffer_job_id), second, START_TIMEOUT_S, "the status from the outbox")
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0

    (final,) = orch.terminal_statuses(buffer_job_id)
    assert final["status"] == "succeeded" and final["output_url"] == video.resolve().as_uri()
    assert final["metrics"]["sha1"] == hashlib.sha1(produced).hexdigest()
    assert video.read_bytes() == produced  # delivered, not generated again
    assert not outbox.exists()
    assert [s["status"] for s in orch.statuses(buffer_job_id)] == ["running", "succeeded"]


def test_sigkill_mid_job_then_a_restart_reports_the_job_failed_retryable_once_before_claiming(
    orch: OrchestratorDouble, tmp_path: Path, tiny_dir: Path
) -> None:
    # An image server that accepts connections and never answers: the job sits in its download.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        image_url = f"http://127.0.0.1:{silent.getsockname()[1]}/face.png"
        buffer_job_id = orch.add_job(job("killed", image_url=image_url))
        env = worker_env(orch, tmp_path, tiny_dir, ALLOW_PRIVATE_IMAGE_URLS="1")
        with WorkerProcess(env, tmp_path / "first.log") as first:
            wait_until(orch, lambda o: o.statuses(buffer_job_id), first, START_TIMEOUT_S, "`running`")
            first.signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
    assert orch.terminal_statuses(buffer_job_id) == []
    journal = tmp_path / "state" / "claim-journal" / f"{buffer_job_id}.claim.json"
    assert journal.exists()
    partial = tmp_path / "outputs" / ".killed.mp4.abcd1234.tmp"  # as a write cut short leaves it
    partial.parent.mkdir(exist_ok=True)
    partial.write_bytes(b"half a video")
    before = len(orch.requests())
    next_job = orch.add_job(job("after-restart"))

    with WorkerProcess(env, tmp_path / "second.log") as second:
        wait_until(orch, ended(buffer_job_id, next_job), second, START_TIMEOUT_S, "both statuses")
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0

    (final,) = orch.terminal_statuses(buffer_job_id)
    assert (final["status"], final["error_code"], final["retryable"]) == ("failed", "worker_shutdown", True)
    assert "restarted during the job" in final["error"]
    assert final["worker_id"] == "vast-test"
    assert len(terminal_attempts(orch, buffer_job_id)) == 1
    second_run = orch.requests()[before:]
    reported = next(i for i, r in enumerate(second_run) if r.ident == buffer_job_id)
    first_claim = next(i for i, r in enumerate(second_run) if r.endpoint is Endpoint.CLAIM)
    assert reported < first_claim
    assert [s["status"] for s in orch.terminal_statuses(next_job)] == ["succeeded"]
    assert orch.progress("killed")[-1]["error_code"] == "worker_shutdown"
    assert not journal.exists() and not partial.exists()
