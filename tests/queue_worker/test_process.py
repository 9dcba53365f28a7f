"""The worker as Salad runs it: ``python -m queue_worker`` in its own process, its exit codes,
its logs, SIGTERM."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from fastwan_adapters.testing import Endpoint, OrchestratorDouble
from fastwan_adapters.testing.hub_double import HubDouble, HubFault
from tests.queue_worker.support import T2V, free_port, get, wait_ready, wait_until, worker_process
from tests.unreachable_b2 import INTERNAL_API_KEY, REASON, SECRETS, unreachable_b2_env

pytestmark = pytest.mark.slow

SECRET = "sekret-internal-key-0042"


def json_lines(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]


def test_the_embedded_default_serves_the_video_it_made_and_stops_on_sigterm(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """The README's command: no B2, no orchestrator, the tiny model on a CPU."""
    env = {"FASTWAN_MODEL": "tiny", "FASTWAN_TINY_DIR": str(tiny_dir)}
    with worker_process(env, tmp_path) as (process, url, log_path):
        wait_ready(url, process)
        job = {
            "musetalk_job_id": "readme-1",
            "prompt": "a lighthouse at dusk",
            "width": 256,
            "height": 320,
            "num_frames": 5,
        }
        answer = httpx.post(f"{url}/generate", json=job, timeout=120)
        video = httpx.get(answer.json()["output_url"].replace("localhost", "127.0.0.1"), timeout=10)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)

    assert answer.status_code == 200, answer.text
    assert answer.json()["output_url"] == f"{url.replace('127.0.0.1', 'localhost')}/outputs/readme-1.mp4"
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        frames = list(container.decode(video=0))
    assert (len(frames), frames[0].width, frames[0].height) == (5, 256, 320)
    assert "fastwan_model_warmup_seconds" in metrics
    assert code == 0, log_path.read_text()[-3000:]


def test_sigterm_lets_the_job_in_hand_finish_logs_json_with_the_job_id_and_no_secret(
    tiny_dir: Path, tmp_path: Path
) -> None:
    with OrchestratorDouble(api_key=SECRET) as orchestrator:
        env = {
            "FASTWAN_MODEL": "tiny",
            "FASTWAN_TINY_DIR": str(tiny_dir),
            "FASTWAN_WARMUP": "0",
            "ORCHESTRATOR_BASE_URL": orchestrator.url,
            "INTERNAL_API_KEY": SECRET,
            "LOG_FORMAT": "json",
            "SHUTDOWN_GRACE_S": "60",
        }
        with worker_process(env, tmp_path) as (process, url, log_path):
            wait_ready(url, process)
            job = {
                "musetalk_job_id": "term-1",
                "prompt": "rain on a window",
                "width": 512,
                "height": 512,
                "num_frames": 9,
            }
            with httpx.Client(timeout=120) as client:
                pending = client.build_request(
                    "POST", f"{url}/generate", json=job, headers={"Salad-Job-Id": "s-1"}
                )
                import threading

                answers: list[httpx.Response] = []
                sender = threading.Thread(target=lambda: answers.append(client.send(pending)))
                sender.start()
                assert orchestrator.wait_for(lambda o: len(o.progress("term-1")) >= 1, timeout=60)
                process.send_signal(signal.SIGTERM)
                sender.join(120)
            code = process.wait(60)
        progress = orchestrator.progress("term-1")

    assert answers[0].status_code == 200, answers[0].text
    assert code == 0
    assert progress[-1]["status"] == "succeeded"
    assert all(r.headers["x-internal-api-key"] == SECRET for r in orchestrator.requests(Endpoint.PROGRESS))
    text = log_path.read_text()
    assert SECRET not in text
    lines = json_lines(log_path)
    job_lines = [line for line in lines if line["event"] in ("job started", "job answered 200: succeeded")]
    assert len(job_lines) == 2
    assert all(line["job_id"] == "term-1" and line["salad_job_id"] == "s-1" for line in job_lines)
    assert any(line["event"].startswith("shutting down: job term-1 may run") for line in lines)


def test_a_wrong_variable_exits_2_naming_it(tmp_path: Path) -> None:
    with worker_process({"SHUTDOWN_GRACE_S": "soon"}, tmp_path) as (process, _url, log_path):
        code = process.wait(60)

    assert code == 2
    assert "SHUTDOWN_GRACE_S must be a number, got 'soon'" in log_path.read_text()


def test_a_real_model_without_a_gpu_is_reported_then_exits_2(tmp_path: Path) -> None:
    """The default model on this CPU-only machine: the load fails, /health says why, the process ends."""
    with worker_process({"FATAL_EXIT_DELAY_S": "3"}, tmp_path) as (process, url, log_path):

        def failure_shown() -> bool:
            assert process.poll() is None, log_path.read_text()[-3000:]
            answer = get(f"{url}/health")
            return answer is not None and answer.status_code == 503

        wait_until(failure_shown, 120, "the failed load to show on /health", interval=0.1)
        health = httpx.get(f"{url}/health", timeout=5).json()
        ready = httpx.get(f"{url}/ready", timeout=5)
        code = process.wait(60)

    assert "needs a CUDA GPU" in health["reason"] and health["state"] == "failed"
    assert ready.status_code == 503
    assert code == 2
    assert "needs a CUDA GPU" in log_path.read_text()


def hub_download_env(tiny_dir: Path, tmp_path: Path, **retry: str) -> dict[str, str]:
    """A start-up that downloads the tiny decoder (FASTWAN_TINY_DECODER) from the Hub."""
    return {
        "FASTWAN_MODEL": "tiny",
        "FASTWAN_TINY_DIR": str(tiny_dir),
        "FASTWAN_WARMUP": "0",
        "FASTWAN_VAE_DECODER": "tiny",
        "FASTWAN_TINY_DECODER": "org/taehv/taew2_2.pth",
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf"),
        "FATAL_EXIT_DELAY_S": "0.5",
        **retry,
    }


def test_a_hub_answering_503_is_retried_then_the_start_up_fails_with_exit_1(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """A download failing for a passing reason is retried in the process (logged), then ends the
    start-up like any other failed start-up: /health says why and the process exits 1."""
    env = hub_download_env(
        tiny_dir,
        tmp_path,
        FASTWAN_DOWNLOAD_RETRY_S="1",
        FASTWAN_DOWNLOAD_RETRY_INITIAL_S="0.05",
        FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S="0.2",
    )
    with HubDouble({"org/taehv": {"taew2_2.pth": b"never served"}}) as hub:
        hub.fail(HubFault(503, method="GET", path_part="/resolve/"))
        with worker_process({**env, "HF_ENDPOINT": hub.url}, tmp_path) as (process, _url, log_path):
            code = process.wait(120)
        log = log_path.read_text()

    assert code == 1, log[-3000:]
    assert log.count("download attempt") >= 2, log[-3000:]
    assert "download attempt 1 failed: the Hub answered HTTP 503" in log
    assert "ModelDownloadFailed" in log and "start the worker again later" in log


def test_with_json_logs_every_line_from_the_first_is_json(tiny_dir: Path, tmp_path: Path) -> None:
    """transformers wrote ``[transformers] ...`` through a handler of its own at every start."""
    env = {"FASTWAN_MODEL": "tiny", "FASTWAN_TINY_DIR": str(tiny_dir), "LOG_FORMAT": "json"}
    with worker_process(env, tmp_path) as (process, url, log_path):
        wait_ready(url, process)
        answer = httpx.post(f"{url}/generate", json={**T2V, "musetalk_job_id": "json-1"}, timeout=60)
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]

    assert answer.status_code == 200 and code == 0
    assert [line for line in lines if not line.startswith("{")] == []
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_sigterm_during_a_retried_download_ends_it_at_once_and_exits_0(
    tiny_dir: Path, tmp_path: Path
) -> None:
    env = hub_download_env(
        tiny_dir,
        tmp_path,
        FASTWAN_DOWNLOAD_RETRY_S="600",
        FASTWAN_DOWNLOAD_RETRY_INITIAL_S="0.5",
        FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S="1",
    )
    with HubDouble({"org/taehv": {"taew2_2.pth": b"never served"}}) as hub:
        hub.fail(HubFault(503, method="GET", path_part="/resolve/"))
        with worker_process({**env, "HF_ENDPOINT": hub.url}, tmp_path) as (process, _url, log_path):
            wait_until(lambda: "download attempt 2 failed" in log_path.read_text(), 120, "a retry")
            process.send_signal(signal.SIGTERM)
            code = process.wait(15)
        log = log_path.read_text()

    assert code == 0, log[-3000:]
    assert "start-up stopped: FASTWAN_TINY_DECODER='org/taehv/taew2_2.pth': the download was stopped" in log
    assert "start-up failed" not in log


def test_a_start_that_is_not_offline_asks_the_hub_for_the_model_only(tiny_dir: Path, tmp_path: Path) -> None:
    """huggingface_hub's telemetry also fetched /api/agent-harnesses at the first request."""
    env = hub_download_env(tiny_dir, tmp_path, FASTWAN_DOWNLOAD_RETRY_S="0")
    with HubDouble({"org/taehv": {"taew2_2.pth": b"never served"}}) as hub:
        hub.fail(HubFault(503, method="GET", path_part="/resolve/"))
        with worker_process({**env, "HF_ENDPOINT": hub.url}, tmp_path) as (process, _url, log_path):
            code = process.wait(120)
        asked = [path for _method, path in hub.requests]

    assert code == 1, log_path.read_text()[-3000:]
    assert asked and all(path.startswith("/org/taehv/resolve/") for path in asked), asked


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_start_up_failure_logs_its_reason_and_trace_with_no_secret(
    log_format: str, tiny_dir: Path, tmp_path: Path
) -> None:
    """B2 out of reach at start: rich's console traceback showed every frame's locals, B2's
    application key and key id among them, and the loader's own list of secrets."""
    env = {
        **unreachable_b2_env(),
        "ORCHESTRATOR_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "INTERNAL_API_KEY": INTERNAL_API_KEY,
        "FASTWAN_MODEL": "tiny",
        "FASTWAN_TINY_DIR": str(tiny_dir),
        "FASTWAN_WARMUP": "0",
        "FATAL_EXIT_DELAY_S": "0",
        "LOG_FORMAT": log_format,
    }
    with worker_process(env, tmp_path) as (process, _url, log_path):
        code = process.wait(120)
    text = log_path.read_text()

    assert code == 1, text[-3000:]
    assert f"start-up failed: B2Unreachable: {REASON}" in text
    assert "Traceback (most recent call last)" in text  # the trace is kept, its values are not
    assert [secret for secret in SECRETS if secret in text] == []
    if log_format == "json":
        (failure,) = [line for line in json_lines(log_path) if line["event"].startswith("start-up failed")]
        assert "B2Unreachable" in failure["exception"]
