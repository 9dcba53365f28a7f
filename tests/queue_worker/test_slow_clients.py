"""Slow and idle clients against ``python -m queue_worker`` in its own process, on raw sockets, at
the file limit a container runtime often sets: the probes keep answering, every half-sent
request is closed after its read deadline, and the log says so in a line, not a traceback per
``accept()``."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from queue_worker.connections import READ_TIMEOUT_S
from tests.queue_worker.support import T2V, get, wait_ready, wait_until, worker_process

pytestmark = pytest.mark.slow

_PARTIAL_HEADERS = b"GET /health HTTP/1.1\r\nHost: worker\r\nX-Slow: "
#: The worker's own file limit: below the number of slow clients, as in the probe that found it.
_WORKER_FILES = 512
_SLOW_CLIENTS = 1200


@pytest.fixture
def many_files() -> Iterator[int]:
    """This process's soft file limit raised to its hard one (it holds every slow client's socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 16
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    yield target
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_slow_clients(url: str, count: int) -> list[socket.socket]:
    """``count`` connections that each send part of a request's headers and then nothing."""
    host, port = url.removeprefix("http://").split(":")
    opened: list[socket.socket] = []
    for _ in range(count):
        try:
            sock = socket.create_connection((host, int(port)), timeout=1.0)
            sock.sendall(_PARTIAL_HEADERS)
        except OSError:  # the server's listen queue is full for a moment: that client is refused
            continue
        opened.append(sock)
    return opened


def closed_by_the_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:  # reset: closed too
        return True


def test_half_sent_requests_past_the_file_limit_leave_the_probes_answering_and_are_closed(
    tiny_dir: Path, tmp_path: Path, many_files: int
) -> None:
    count = min(_SLOW_CLIENTS, many_files - 200)
    env = {"FASTWAN_MODEL": "tiny", "FASTWAN_TINY_DIR": str(tiny_dir), "FASTWAN_WARMUP": "0"}
    limit = (_WORKER_FILES, _WORKER_FILES)
    with worker_process(env, tmp_path, file_limit=limit) as (process, url, log_path):
        wait_ready(url, process)
        slow = open_slow_clients(url, count)
        try:
            probes = [get(f"{url}{path}", timeout=3.0) for path in ("/health", "/ready") * 3]
            job = httpx.post(f"{url}/generate", json=T2V, timeout=60)
            wait_until(
                lambda: all(closed_by_the_server(sock) for sock in slow),
                READ_TIMEOUT_S + 10,
                "every slow client to be closed",
                interval=0.5,
            )
            time.sleep(0.5)
            after = get(f"{url}/health")
            alive = process.poll() is None
        finally:
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.close()
        log = log_path.read_text()

    assert len(slow) >= _WORKER_FILES, f"only {len(slow)} slow clients got a connection"
    assert [answer.status_code if answer else None for answer in probes] == [200] * 6, log[-3000:]
    assert job.status_code == 200 and job.json()["status"] == "succeeded"
    assert after is not None and after.status_code == 200 and alive
    assert "Traceback" not in log and "socket.accept() out of system resource" not in log
    assert "connections closed at the cap of" in log
    assert len(log) < 100_000, f"{len(log)} characters of log"


def test_the_soft_file_limit_is_raised_to_the_hard_one_and_the_cap_stays_below_it(tmp_path: Path) -> None:
    with worker_process({}, tmp_path, file_limit=(400, 4096)) as (process, url, log_path):
        wait_until(lambda: get(f"{url}/health") is not None, 60, "the server to listen")
        limits = Path(f"/proc/{process.pid}/limits").read_text()

    open_files = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert open_files.split()[3:5] == ["4096", "4096"], open_files
    assert "connections: at most 256 open" in log_path.read_text()


def test_a_file_limit_too_low_for_the_worker_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    with worker_process({}, tmp_path, file_limit=(300, 300)) as (process, _url, log_path):
        code = process.wait(60)
        log = log_path.read_text()

    assert code == 2, log[-2000:]
    assert "RLIMIT_NOFILE, ulimit -n) is 300" in log
