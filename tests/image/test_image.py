"""The CPU twin of the image, run: what an operator would first see go wrong on Salad or Vast.

Built by ``make image`` from docker/Dockerfile.fastwan (docs/deploy.md, "The CPU twin") and run
with buildah (tests/image/twin.py). Each test runs in a fresh working container of the image,
as the image's user, through the image's own ENTRYPOINT and HEALTHCHECK.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import httpx
import pytest

from fastwan_adapters.testing import Endpoint, OrchestratorDouble
from tests.image.twin import Running, Twin, command_line, uids

pytestmark = pytest.mark.slow

# A busy two-core machine: torch's import and the tiny model's build take a while in there.
START_TIMEOUT_S = 240.0
JOB_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 40
HEARTBEAT_INTERVAL_S = 0.5
# Not square, so that a swapped width and height shows.
JOB: dict[str, Any] = {"prompt": "a red fox in the snow", "num_frames": 5, "width": 320, "height": 256}
DATA_DIRS = ("/data/hf", "/data/state", "/data/outputs")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def video_size(path: Path) -> tuple[int, int, int]:
    """``(frames, width, height)`` of an MP4, decoding every frame."""
    with av.open(str(path)) as video:
        stream = video.streams.video[0]
        frames = sum(1 for _ in video.decode(stream))
        return frames, stream.codec_context.width, stream.codec_context.height


def image_uid(twin: Twin) -> int:
    return int(twin.user.split(":")[0])


def assert_all_run_as_the_image_user(twin: Twin, running: Running, program: str) -> None:
    pids = running.pids()
    programs = [" ".join(command_line(pid)) for pid in pids]
    assert any(program in line for line in programs), f"{program} not among {programs}"
    for pid, line in zip(pids, programs, strict=True):
        assert set(uids(pid)) == {image_uid(twin)}, f"{line} runs as {uids(pid)}"


# --- the image itself ---------------------------------------------------------------------------


def test_the_image_user_is_not_root_and_can_write_every_data_folder(twin: Twin, container: str) -> None:
    assert image_uid(twin) != 0
    script = (
        "id -u; for d in " + " ".join(DATA_DIRS) + ' ; do touch "$d/.probe" && rm "$d/.probe" || exit 1; done'
    )

    result = twin.run(container, "/bin/sh", "-c", script)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(image_uid(twin))]


def test_pip_check_passes_in_the_image(twin: Twin, container: str) -> None:
    result = twin.run(container, "pip", "check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No broken requirements found" in result.stdout


def test_fastwan_generate_runs(twin: Twin, container: str) -> None:
    result = twin.run(container, "fastwan-generate", "--help")

    assert result.returncode == 0, result.stderr
    assert "--prompt" in result.stdout


def test_queue_mode_refuses_to_start_without_the_salad_binary_and_says_why(
    twin: Twin, container: str
) -> None:
    """The twin has no Salad binary (SALAD_QUEUE_WORKER_VERSION=none)."""
    result = twin.run(container, *twin.entrypoint, env={"WORKER_MODE": "queue"})

    assert result.returncode == 127
    assert "salad-http-job-queue-worker" in result.stderr
    assert "SALAD_QUEUE_WORKER_VERSION=none" in result.stderr
    assert "SALAD_QUEUE_WORKER=off" in result.stderr


# --- queue mode ---------------------------------------------------------------------------------


def wait_ready(base: str, running: Running) -> list[int]:
    """Every /ready answer until the first 200."""
    answers: list[int] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert running.running, f"the container exited before /ready answered 200\n{running.log()}"
        with contextlib.suppress(httpx.TransportError):
            answers.append(httpx.get(f"{base}/ready", timeout=5).status_code)
        if answers[-1:] == [200]:
            return answers
        time.sleep(0.05)
    raise AssertionError(
        f"/ready answered {answers[-3:]}, not 200, within {START_TIMEOUT_S} s\n{running.log()}"
    )


def test_queue_mode_serves_a_job_and_stops_cleanly(twin: Twin, container: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "WORKER_MODE": "queue",
        "SALAD_QUEUE_WORKER": "off",
        "FASTWAN_MODEL": "tiny",
        "HF_HUB_OFFLINE": "1",
        "PORT": str(port),
        "PUBLIC_BASE_URL": base,
        "STOP_TIMEOUT_S": str(STOP_TIMEOUT_S),
    }
    with Running(twin, container, env, tmp_path / "queue.log") as running:
        answers = wait_ready(base, running)
        assert answers[0] == 503, f"/ready answered {answers[0]} first, before the model was loaded"
        assert_all_run_as_the_image_user(twin, running, "fastwan-queue-worker")

        answer = httpx.post(
            f"{base}/generate", json={**JOB, "musetalk_job_id": "twin-q1"}, timeout=JOB_TIMEOUT_S
        )

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "succeeded"
        assert body["output_url"] == f"{base}/outputs/twin-q1.mp4"
        video = tmp_path / "twin-q1.mp4"
        video.write_bytes(httpx.get(body["output_url"], timeout=30).raise_for_status().content)
        assert video_size(video) == (JOB["num_frames"], JOB["width"], JOB["height"])

        healthy = twin.run(container, *twin.healthcheck, env={"PORT": str(port)}, timeout=10)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        # The same command against a port nobody serves fails: it does check the worker.
        nobody = twin.run(container, *twin.healthcheck, env={"PORT": str(free_port())}, timeout=10)
        assert nobody.returncode != 0

        status, seconds = running.stop(timeout=STOP_TIMEOUT_S)

        assert status == 0, running.log()
        assert seconds < STOP_TIMEOUT_S


# --- buffer mode --------------------------------------------------------------------------------


def wait_for(orch: OrchestratorDouble, running: Running, what: str, condition: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        if orch.wait_for(condition, timeout=0.5):
            return
        assert running.running, f"the container exited before {what}\n{running.log()}"
    raise AssertionError(f"timed out waiting for {what}\n{running.log()}")


def test_buffer_mode_claims_a_job_heartbeats_and_stops_cleanly(
    twin: Twin, container: str, tmp_path: Path
) -> None:
    worker_id = "twin-buffer"
    with OrchestratorDouble() as orch:
        buffer_job_id = orch.add_job({**JOB, "musetalk_job_id": "twin-b1"})
        env = {
            "WORKER_MODE": "buffer",
            "ORCHESTRATOR_BASE_URL": orch.url,
            "INTERNAL_API_KEY": orch.api_key,
            "BUFFER_WORKER_ID": worker_id,
            "GPU_CLASS": "Twin CPU",
            "FASTWAN_MODEL": "tiny",
            "FASTWAN_WARMUP": "0",
            "HF_HUB_OFFLINE": "1",
            "HEARTBEAT_INTERVAL_S": str(HEARTBEAT_INTERVAL_S),
            "BUFFER_POLL_INTERVAL_S": "0.2",
            "SHUTDOWN_GRACE_S": "10",
            "STOP_TIMEOUT_S": str(STOP_TIMEOUT_S),
        }
        with Running(twin, container, env, tmp_path / "buffer.log") as running:
            wait_for(orch, running, "the job to end", lambda o: o.terminal_statuses(buffer_job_id))
            assert_all_run_as_the_image_user(twin, running, "fastwan-buffer-worker")

            assert [s["status"] for s in orch.statuses(buffer_job_id)] == ["running", "succeeded"]
            (final,) = orch.terminal_statuses(buffer_job_id)
            url = urlsplit(final["output_url"])
            assert (url.scheme, Path(url.path).parent) == ("file", Path("/data/outputs")), final["output_url"]
            video = twin.mountpoint(container) / url.path.lstrip("/")
            assert video_size(video) == (JOB["num_frames"], JOB["width"], JOB["height"])

            # Heartbeats at every interval, also while the job ran; a busy machine may stretch one.
            beats_so_far = len(orch.heartbeats(worker_id))
            wait_for(
                orch,
                running,
                "three more heartbeats",
                lambda o: len(o.heartbeats(worker_id)) >= beats_so_far + 3,
            )
            times = [r.at for r in orch.requests(Endpoint.HEARTBEAT) if r.ident == worker_id]
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            assert max(gaps) < 6 * HEARTBEAT_INTERVAL_S, f"heartbeat gaps {gaps}"
            assert sum(gaps) / len(gaps) < 2 * HEARTBEAT_INTERVAL_S, f"heartbeat gaps {gaps}"

            status, seconds = running.stop(timeout=STOP_TIMEOUT_S)

            assert status == 0, running.log()
            assert seconds < STOP_TIMEOUT_S
            assert orch.heartbeats(worker_id)[-1]["status"] == "stopping"
