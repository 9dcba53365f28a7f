"""Running the buffer worker as a real process, as Vast.ai runs it, against the orchestrator double.

``WorkerProcess`` starts ``python -m buffer_worker`` with a test environment (tiny model,
local storage, short intervals), keeps its log in a file for failure messages, and always
leaves no process behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import av

from fastwan_adapters.orchestrator import OrchestratorClient
from fastwan_adapters.testing import Endpoint, OrchestratorDouble

# Short enough for tests, long enough that a loaded 2-core machine keeps the cadence.
HEARTBEAT_INTERVAL_S = 0.1
# A small job of the tiny model: about half a second of CPU on an idle machine.
SMALL_JOB: dict[str, Any] = {"prompt": "a red fox in the snow", "num_frames": 5, "width": 256, "height": 256}
# Startup (torch import, tiny model load) on a busy 2-core machine can take a while.
START_TIMEOUT_S = 90.0
JOB_TIMEOUT_S = 60.0


def worker_env(orch: OrchestratorDouble, tmp: Path, tiny_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of one worker: its own state and output folders under ``tmp``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("B2_", "BUFFER_", "GPU_", "HEARTBEAT_", "SHUTDOWN_", "METRICS_"))
    }
    env.update(
        {
            "ORCHESTRATOR_BASE_URL": orch.url,
            "INTERNAL_API_KEY": orch.api_key,
            "BUFFER_WORKER_ID": "vast-test",
            "GPU_CLASS": "Test GPU",
            "FASTWAN_MODEL": "tiny",
            "FASTWAN_TINY_DIR": str(tiny_dir),
            "FASTWAN_WARMUP": "0",
            "HF_HUB_OFFLINE": "1",
            "HEARTBEAT_INTERVAL_S": str(HEARTBEAT_INTERVAL_S),
            "BUFFER_POLL_INTERVAL_S": "0.1",
            "ORCHESTRATOR_RETRY_INITIAL_S": "0.1",
            "SHUTDOWN_GRACE_S": "25",
            "STATE_DIR": str(tmp / "state"),
            "OUTPUT_DIR": str(tmp / "outputs"),
            "LOG_FORMAT": "console",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


class WorkerProcess:
    """``python -m buffer_worker`` in a subprocess; a context manager that kills it on exit."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "buffer_worker"],
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.kill()

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not exit within {timeout} s\n{self.log()}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._log.close()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]


def wait_until(
    orch: OrchestratorDouble,
    condition: Callable[[OrchestratorDouble], Any],
    worker: WorkerProcess,
    timeout: float = JOB_TIMEOUT_S,
    what: str = "the condition",
) -> None:
    """Wait for ``condition`` on the double; fail with the worker's log if it never holds or
    the worker dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if orch.wait_for(condition, timeout=0.5):
            return
        if not worker.running:
            raise AssertionError(
                f"the worker exited ({worker.process.returncode}) before {what}\n{worker.log()}"
            )
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{worker.log()}")


def ready(orch: OrchestratorDouble) -> bool:
    """The worker has loaded its model: it claims."""
    return bool(orch.requests(Endpoint.CLAIM))


def ended(*buffer_job_ids: str) -> Callable[[OrchestratorDouble], bool]:
    return lambda orch: all(orch.terminal_statuses(b) for b in buffer_job_ids)


def decoded_frames(path: Path) -> tuple[int, int, int, str]:
    """``(frames, width, height, codec)`` of an MP4, by decoding every frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, stream.codec_context.width, stream.codec_context.height, stream.codec_context.name


def claimed_earlier(orch: OrchestratorDouble, worker_id: str = "w-1") -> dict[str, Any] | None:
    """One claim, as an earlier run of the worker made it (a client on an event loop of its own)."""

    async def claim() -> dict[str, Any] | None:
        async with OrchestratorClient(orch.url, orch.api_key) as client:
            return await client.claim(worker_id)

    return asyncio.run(claim())
