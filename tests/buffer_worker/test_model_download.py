"""A start-up download from the Hub, as Vast.ai runs the buffer worker: a Hub that keeps failing
for a passing reason ends the start-up with exit 1 (the supervisor starts the worker again)
after the bounded retry; a lasting failure stays a configuration error (exit 2, the container
stops) with its reason.

The download is the tiny decoder's (``FASTWAN_TINY_DECODER``), the one a CPU worker makes: it goes
through the same retry as the model's. huggingface_hub reads ``HF_ENDPOINT`` at import, in the
worker process, and talks to the Hub double on loopback.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastwan_adapters.testing import Endpoint, OrchestratorDouble
from fastwan_adapters.testing.hub_double import HubDouble, HubFault

from .harness import START_TIMEOUT_S, WorkerProcess, wait_until, worker_env

pytestmark = pytest.mark.slow

_DECODER = "org/taehv/taew2_2.pth"


@pytest.fixture
def hub() -> Iterator[HubDouble]:
    with HubDouble({"org/taehv": {"taew2_2.pth": b"never served"}}) as double:
        yield double


def download_env(
    orch: OrchestratorDouble, tmp: Path, tiny_dir: Path, hub: HubDouble, decoder: str
) -> dict[str, str]:
    return worker_env(
        orch,
        tmp,
        tiny_dir,
        FASTWAN_VAE_DECODER="tiny",
        FASTWAN_TINY_DECODER=decoder,
        HF_HUB_OFFLINE="0",
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp / "hf"),
        FASTWAN_DOWNLOAD_RETRY_S="1",
        FASTWAN_DOWNLOAD_RETRY_INITIAL_S="0.05",
        FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S="0.2",
    )


def test_a_hub_answering_503_past_the_retry_time_exits_1_to_be_restarted(
    orch: OrchestratorDouble, tiny_dir: Path, tmp_path: Path, hub: HubDouble
) -> None:
    hub.fail(HubFault(503, method="GET", path_part="/resolve/"))

    with WorkerProcess(download_env(orch, tmp_path, tiny_dir, hub, _DECODER), tmp_path / "w.log") as worker:
        code = worker.wait(START_TIMEOUT_S)
        log = worker.log_path.read_text()

    assert code == 1, log[-3000:]
    assert log.count("download attempt") >= 2, log[-3000:]
    assert f"FASTWAN_TINY_DECODER={_DECODER!r}: download attempt 1 failed: the Hub answered HTTP 503" in log
    assert "(FASTWAN_DOWNLOAD_RETRY_S=1)" in log and "ModelDownloadFailed" in log


def test_a_file_missing_on_the_hub_exits_2_with_the_reason(
    orch: OrchestratorDouble, tiny_dir: Path, tmp_path: Path, hub: HubDouble
) -> None:
    decoder = "org/taehv/lighttaew2_2.pth"

    with WorkerProcess(download_env(orch, tmp_path, tiny_dir, hub, decoder), tmp_path / "w.log") as worker:
        code = worker.wait(START_TIMEOUT_S)
        log = worker.log_path.read_text()

    assert code == 2, log[-3000:]
    assert f"FASTWAN_TINY_DECODER={decoder!r} could not be downloaded" in log
    assert "the repository has no such file" in log and "download attempt" not in log


def test_sigterm_during_a_retried_download_ends_it_at_once_exits_0_with_a_stopping_heartbeat(
    orch: OrchestratorDouble, tiny_dir: Path, tmp_path: Path, hub: HubDouble
) -> None:
    """Issue 23, finding 1: the worker went on retrying for FASTWAN_DOWNLOAD_RETRY_S (600 s),
    heartbeating ``stopping``, until the supervisor killed it (137)."""
    hub.fail(HubFault(503, method="GET", path_part="/resolve/"))
    env = {
        **download_env(orch, tmp_path, tiny_dir, hub, _DECODER),
        "FASTWAN_DOWNLOAD_RETRY_S": "600",
        "FASTWAN_DOWNLOAD_RETRY_INITIAL_S": "0.5",
        "FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S": "1",
        "SHUTDOWN_GRACE_S": "3",
    }

    with WorkerProcess(env, tmp_path / "w.log") as worker:
        wait_until(
            orch,
            lambda _o: "download attempt 2 failed" in worker.log_path.read_text(),
            worker,
            START_TIMEOUT_S,
            "a retried download",
        )
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait(30)
        took = time.monotonic() - signalled
        log = worker.log_path.read_text()

    assert code == 0, log[-3000:]
    assert took < 3 + 2.0, log[-3000:]
    assert f"start-up stopped: FASTWAN_TINY_DECODER={_DECODER!r}: the download was stopped" in log
    assert "start-up failed" not in log and "download attempt 4" not in log
    assert orch.heartbeats("vast-test")[-1]["status"] == "stopping"
    assert orch.requests(Endpoint.CLAIM) == []
