"""The worker's life on a real uvicorn: ready only once loaded, a failed load or an unusable GPU
ends it, SIGTERM drains the job in hand or answers it ``worker_shutdown``."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from fastwan_adapters.config import ConfigError
from fastwan_adapters.exit_code import ExitCode
from fastwan_core import ErrorCode, JobFailure, JobState
from fastwan_core.ports import VideoGenerator
from tests.queue_worker.support import T2V, Fakes, Served, fake_container, serving, settings_for, wait_until


def job_in_hand(worker: Served, fakes: Fakes, answers: list[httpx.Response]) -> threading.Thread:
    """``T2V`` posted from a thread of its own (its answer into ``answers``), once its first step ran."""
    job = threading.Thread(target=lambda: answers.append(worker.client.post("/generate", json=T2V)))
    job.start()
    wait_until(lambda: fakes.generator.steps_run == [1], 10, "the job's first step")
    return job


def test_the_server_answers_at_once_and_is_ready_only_once_the_model_is_loaded(tmp_path: Path) -> None:
    fakes, loaded = Fakes(), threading.Event()

    def slow_load() -> VideoGenerator:
        loaded.wait(30)
        return fakes.generator

    with serving(fake_container(settings_for(tmp_path), fakes, load=slow_load), ready=False) as worker:
        health = worker.client.get("/health")
        not_ready = worker.client.get("/ready")
        early_job = worker.client.post("/generate", json=T2V)
        loaded.set()
        worker.wait_ready(10)
        job = worker.client.post("/generate", json=T2V)

    assert health.status_code == 200 and health.json()["state"] == "loading"
    assert not_ready.status_code == 503 and not_ready.json() == {"state": "loading"}
    assert early_job.status_code == 503
    assert early_job.json()["retryable"] is True
    assert job.status_code == 200
    assert list(fakes.store.objects) == ["t2v-1.mp4"]  # the early job never ran


def test_a_failed_load_is_reported_by_both_probes_then_ends_the_server(tmp_path: Path) -> None:
    def broken_load() -> VideoGenerator:
        raise ConfigError("FASTWAN_MODEL='org/model' needs a CUDA GPU; none was found")

    container = fake_container(settings_for(tmp_path, FATAL_EXIT_DELAY_S="1.5"), Fakes(), load=broken_load)
    with serving(container, ready=False) as worker:
        wait_until(lambda: worker.client.get("/health").status_code == 503, 10, "the failure to show")
        health, ready = worker.client.get("/health").json(), worker.client.get("/ready")
        job = worker.client.post("/generate", json=T2V)
        worker.thread.join(15)
        stopped = not worker.thread.is_alive()

    assert health["status"] == "failed" and health["state"] == "failed"
    assert "FASTWAN_MODEL" in health["reason"] and "CUDA GPU" in health["reason"]
    assert ready.status_code == 503 and "CUDA GPU" in ready.json()["reason"]
    assert job.status_code == 503
    assert stopped, "the server should stop by itself"
    assert container.process_exit().code is ExitCode.CONFIG  # restarting cannot bring a GPU


def test_a_load_failing_for_a_reason_that_passes_ends_the_server_asking_for_a_restart(
    tmp_path: Path,
) -> None:
    def unlucky_load() -> VideoGenerator:
        raise RuntimeError("CUDA error: an illegal memory access during warm-up")

    container = fake_container(settings_for(tmp_path, FATAL_EXIT_DELAY_S="0.3"), Fakes(), load=unlucky_load)
    with serving(container, ready=False) as worker:
        wait_until(lambda: worker.client.get("/health").status_code == 503, 10, "the failure to show")
        worker.thread.join(15)
        stopped = not worker.thread.is_alive()

    assert stopped, "the server should stop by itself"
    assert container.process_exit().code is ExitCode.RESTART
    assert "illegal memory access" in (container.process_exit().reason or "")


def test_a_job_that_leaves_the_gpu_unusable_is_answered_then_the_worker_ends(tmp_path: Path) -> None:
    fakes = Fakes()
    fakes.generator.failure = JobFailure(
        ErrorCode.GENERATION_FAILED, "CUDA error: an illegal memory access", retryable=True, fatal=True
    )
    container = fake_container(settings_for(tmp_path, FATAL_EXIT_DELAY_S="1"), fakes)
    with serving(container) as worker:
        answer = worker.client.post("/generate", json=T2V)
        health = worker.client.get("/health")
        worker.thread.join(15)
        stopped = not worker.thread.is_alive()

    assert answer.status_code == 500 and answer.json()["error_code"] == "generation_failed"
    assert health.status_code == 503 and "illegal memory access" in health.json()["reason"]
    assert stopped
    assert container.process_exit().code is ExitCode.RESTART


def test_after_sigterm_no_new_job_is_taken_and_the_one_in_hand_finishes(tmp_path: Path) -> None:
    fakes = Fakes()
    fakes.generator.on_step = lambda _index: time.sleep(0.3)
    container = fake_container(settings_for(tmp_path, SHUTDOWN_GRACE_S="10"), fakes)
    answers: list[httpx.Response] = []
    with serving(container) as worker:
        job = job_in_hand(worker, fakes, answers)
        container.slot().begin_shutdown(10.0)  # what SIGTERM does first, before uvicorn closes its socket
        with httpx.Client(base_url=worker.url) as other:
            refused = other.post("/generate", json={**T2V, "musetalk_job_id": "late-1"})
            ready = other.get("/ready")
        worker.server.handle_exit(signal.SIGTERM, None)
        job.join(15)
        worker.thread.join(15)
        stopped = not worker.thread.is_alive()

    assert refused.status_code == 503
    assert refused.json()["error_code"] == "worker_shutdown" and refused.json()["retryable"] is True
    assert ready.status_code == 503 and ready.json()["state"] == "stopping"
    assert answers[0].status_code == 200 and fakes.generator.steps_run == [1, 2, 3]
    assert "late-1.mp4" not in fakes.store.objects
    assert stopped and container.process_exit().code is ExitCode.OK


def test_after_sigterm_the_server_keeps_listening_until_the_job_in_hand_is_answered(tmp_path: Path) -> None:
    """Salad's binary is stopped only once this process has exited: a job it sends meanwhile must
    get a retryable 503, and the probes their answers, not a refused connection."""
    fakes = Fakes()
    fakes.generator.on_step = lambda _index: time.sleep(0.3)
    container = fake_container(settings_for(tmp_path, SHUTDOWN_GRACE_S="10"), fakes)
    answers: list[httpx.Response] = []
    with serving(container) as worker:
        job = job_in_hand(worker, fakes, answers)
        worker.server.handle_exit(signal.SIGTERM, None)
        with httpx.Client(base_url=worker.url) as other:
            late = other.post("/generate", json={**T2V, "musetalk_job_id": "late-2"})
            health = other.get("/health")
        job.join(15)
        worker.thread.join(15)
        stopped = not worker.thread.is_alive()

    assert late.status_code == 503 and late.json()["error_code"] == "worker_shutdown"
    assert health.status_code == 200 and health.json()["state"] == "stopping"
    assert answers[0].status_code == 200 and fakes.generator.steps_run == [1, 2, 3]
    assert stopped and container.process_exit().code is ExitCode.OK


def test_a_job_still_running_when_the_grace_runs_out_is_answered_worker_shutdown(tmp_path: Path) -> None:
    fakes = Fakes()
    fakes.generator.on_step = lambda _index: time.sleep(0.6)
    container = fake_container(settings_for(tmp_path, SHUTDOWN_GRACE_S="0.3"), fakes)
    answers: list[httpx.Response] = []
    with serving(container) as worker:
        job = job_in_hand(worker, fakes, answers)
        worker.server.handle_exit(signal.SIGTERM, None)
        job.join(15)
        worker.thread.join(15)

    assert answers[0].status_code == 503, answers[0].text
    body = answers[0].json()
    assert (
        body["status"] == "failed" and body["error_code"] == "worker_shutdown" and body["retryable"] is True
    )
    assert fakes.generator.steps_run == [1]
    final = fakes.progress.for_job("t2v-1")[-1][0]
    assert final.status is JobState.FAILED and final.error_code is ErrorCode.WORKER_SHUTDOWN
    assert "t2v-1.mp4" not in fakes.store.objects


def test_the_grace_running_out_during_decode_stops_the_job_within_one_chunk(tmp_path: Path) -> None:
    fakes = Fakes()
    fakes.generator.on_chunk = lambda _index: time.sleep(1.0)
    container = fake_container(settings_for(tmp_path, SHUTDOWN_GRACE_S="0.3"), fakes)
    answers: list[httpx.Response] = []
    job_body = {**T2V, "num_frames": 17}  # five decode chunks
    with serving(container) as worker:
        job = threading.Thread(target=lambda: answers.append(worker.client.post("/generate", json=job_body)))
        job.start()
        wait_until(lambda: fakes.generator.chunks_decoded == [1], 10, "the first decode chunk")
        worker.server.handle_exit(signal.SIGTERM, None)
        job.join(15)
        worker.thread.join(15)

    assert answers[0].status_code == 503, answers[0].text
    assert answers[0].json()["error_code"] == "worker_shutdown"
    assert fakes.generator.chunks_decoded == [1]  # the grace ran out in chunk 1: chunk 2 never ran
    assert fakes.encoder.sessions[-1].state == "aborted"
    assert "t2v-1.mp4" not in fakes.store.objects
