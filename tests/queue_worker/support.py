"""Helpers for the queue worker's tests: settings, a container of fakes, a real uvicorn on loopback."""

from __future__ import annotations

import io
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import httpx
from dependency_injector import providers
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from fastwan_core import ProgressUpdate
from fastwan_core.ports import VideoGenerator
from fastwan_core.testing import FakeEncoder, FakeGenerator, FakeImageLoader, InMemoryResultStore
from queue_worker.app import create_app
from queue_worker.containers import Container
from queue_worker.server import QueueServer, build_server
from queue_worker.settings import QueueWorkerSettings

T2V: dict[str, Any] = {
    "musetalk_job_id": "t2v-1",
    "prompt": "a fox in the snow",
    "width": 256,
    "height": 320,
    "num_frames": 5,
}
I2V: dict[str, Any] = {**T2V, "musetalk_job_id": "i2v-1", "image_url": "https://images.example/face.png"}


def settings_for(tmp_path: Path, **env: str) -> QueueWorkerSettings:
    """Settings as a test machine would have them: local storage, no orchestrator, short delays."""
    base = {
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "FASTWAN_MODEL": "tiny",
        "FASTWAN_WARMUP": "0",
        "HF_HUB_OFFLINE": "1",
        "WORKER_ID": "test-worker",
        "FATAL_EXIT_DELAY_S": "0.3",
        "SHUTDOWN_GRACE_S": "5",
    }
    return QueueWorkerSettings.from_env(base | env)


@attrs.define
class TimedProgress:
    """The progress port, recording each update with the time it was reported."""

    updates: list[tuple[str, ProgressUpdate, float]] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def report(self, job_id: str, update: ProgressUpdate) -> None:
        with self.lock:
            self.updates.append((job_id, update, time.monotonic()))

    def for_job(self, job_id: str) -> list[tuple[ProgressUpdate, float]]:
        with self.lock:
            return [(update, at) for recorded, update, at in self.updates if recorded == job_id]


@attrs.define
class Fakes:
    """Every port but the clock, faked; mutable so that a test can make one fail."""

    images: FakeImageLoader = attrs.field(factory=FakeImageLoader)
    generator: FakeGenerator = attrs.field(factory=FakeGenerator)
    encoder: FakeEncoder = attrs.field(factory=FakeEncoder)
    store: InMemoryResultStore = attrs.field(factory=InMemoryResultStore)
    progress: TimedProgress = attrs.field(factory=TimedProgress)

    def reset(self) -> None:
        self.images.failure = self.encoder.failure = self.store.failure = None
        self.generator.failure, self.generator.fail_at_step, self.generator.on_step = None, 0, None
        self.generator.steps_run.clear()
        self.generator.on_chunk = None
        self.generator.chunks_decoded.clear()


def fake_container(
    settings: QueueWorkerSettings, fakes: Fakes, *, load: Callable[[], VideoGenerator] | None = None
) -> Container:
    """The real container with every adapter replaced by a fake; ``load`` replaces the model's load."""
    container = Container(settings=settings)
    generation = container.generation
    generation.generator.override(providers.Callable(load) if load else providers.Object(fakes.generator))
    generation.images.override(providers.Object(fakes.images))
    generation.encoder.override(providers.Object(fakes.encoder))
    generation.store.override(providers.Object(fakes.store))
    container.sender.override(providers.Object(fakes.progress))  # behind the worker's filter
    return container


@attrs.frozen
class Served:
    url: str
    server: QueueServer
    thread: threading.Thread
    container: Container
    client: httpx.Client

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(lambda: self.client.get("/ready").status_code == 200, timeout, "the worker to be ready")

    def metric(self, name: str, **labels: str) -> float:
        """A sample's value on ``/metrics`` (0 when absent)."""
        text = self.client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0


@contextmanager
def serving(container: Container, *, ready: bool = True) -> Iterator[Served]:
    """The app on a real uvicorn, on 127.0.0.1 and an ephemeral port, in a thread."""
    app = create_app(container)
    server = build_server(app, container, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30.0, "uvicorn to start")
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60.0) as client:
        served = Served(url, server, thread, container, client)
        try:
            if ready:
                served.wait_ready()
            yield served
        finally:
            server.should_exit = True
            thread.join(30.0)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_post(url: str, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> socket.socket:
    """Send a POST on a raw socket and return it unread, so that a test can hang up mid-job."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


@contextmanager
def worker_process(
    env: Mapping[str, str], tmp_path: Path, *, file_limit: tuple[int, int] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``python -m queue_worker`` on a free port; yields the process, its URL and its log file.

    ``file_limit``: the child's ``RLIMIT_NOFILE`` (soft, hard), as a container runtime sets it.
    """
    port = free_port()
    log_path = tmp_path / "worker.log"
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "HF_HUB_OFFLINE": "1",
        "PORT": str(port),
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        **env,
    }

    def limit_files() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, file_limit)

    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "queue_worker"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_files,  # noqa: PLW1509 - only setrlimit, before exec
        )
    try:
        yield process, f"http://127.0.0.1:{port}", log_path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def get(url: str, timeout: float = 2.0) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=timeout)
    except httpx.TransportError:
        return None


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    def ready() -> bool:
        assert process.poll() is None, "the worker exited before it was ready"
        answer = get(f"{url}/ready")
        return answer is not None and answer.status_code == 200

    wait_until(ready, timeout, "the worker to be ready", interval=0.2)


@contextmanager
def png_server(release: threading.Event | None = None) -> Iterator[tuple[str, threading.Event]]:
    """A PNG served from 127.0.0.1 (private: the worker must be told to allow it), and an event
    set once it was asked for. With ``release``, it is sent only once that is set: a job holds
    its first frame for as long as a test needs, whatever the machine's speed."""
    buffer = io.BytesIO()
    Image.new("RGB", (200, 250), (200, 40, 40)).save(buffer, format="PNG")
    png = buffer.getvalue()
    asked = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.set()
            if release is not None:
                release.wait(60)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/face.png", asked
    finally:
        if release is not None:
            release.set()
        server.shutdown()
        server.server_close()
