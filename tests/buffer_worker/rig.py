"""The buffer worker in-process, composed by its container with the core's fakes for the model:
the real client, outbox, journal and heartbeat against the orchestrator double (``make_rig``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from dependency_injector import providers

from buffer_worker.containers import Container
from buffer_worker.settings import BufferWorkerSettings
from buffer_worker.worker import BufferWorker
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.orchestrator import HeartbeatAnswer, OrchestratorClient, RetryPolicy, StatusOutbox
from fastwan_adapters.testing import Endpoint, OrchestratorDouble
from fastwan_core import WorkerInfo
from fastwan_core.testing import (
    FakeEncoder,
    FakeGenerator,
    FakeImageLoader,
    InMemoryResultStore,
    RecordingProgressReporter,
)

JOB = {"prompt": "a cat on a sofa", "num_frames": 9, "width": 256, "height": 256}
TIMEOUT = 10.0


@attrs.define
class Rig:
    """One worker of the container, run by ``asyncio.run`` on a thread of the test (``start``);
    ``request_stop`` and ``stop_now`` are the first and second signal."""

    orch: OrchestratorDouble
    client: OrchestratorClient
    container: Container
    generator: FakeGenerator
    store: InMemoryResultStore
    sent_progress: RecordingProgressReporter
    thread: threading.Thread | None = None
    loop: asyncio.AbstractEventLoop | None = None
    exit_code: ExitCode | None = None

    @property
    def worker(self) -> BufferWorker:
        return self.container.worker()

    @property
    def outbox(self) -> StatusOutbox:
        return self.container.outbox()

    def start(self) -> Rig:
        running = threading.Event()

        async def run() -> ExitCode:
            self.loop = asyncio.get_running_loop()
            running.set()
            return await self.worker.run()

        def main() -> None:
            self.exit_code = asyncio.run(run())

        self.thread = threading.Thread(target=main, name="test-event-loop", daemon=True)
        self.thread.start()
        assert running.wait(TIMEOUT)
        return self

    def request_stop(self) -> None:
        """What the first SIGTERM does."""
        self._call(self.worker.stop)

    def stop_now(self) -> None:
        """What the second SIGTERM does."""
        self._call(self.worker.stop_now)

    def _call(self, action: Callable[[], None]) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(action)

    def join(self, timeout: float = TIMEOUT) -> ExitCode | None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not end"
        return self.exit_code

    def wait(self, condition: Callable[[OrchestratorDouble], Any], what: str) -> None:
        assert self.orch.wait_for(condition, timeout=TIMEOUT), f"timed out waiting for {what}"

    def running(self, buffer_job_id: str) -> Callable[[OrchestratorDouble], bool]:
        return lambda o: bool(o.statuses(buffer_job_id))

    def ended(self, buffer_job_id: str) -> Callable[[OrchestratorDouble], bool]:
        return lambda o: bool(o.terminal_statuses(buffer_job_id))


class BreakingHeartbeats(OrchestratorClient):
    """The client, whose heartbeats pass through until ``broken`` is set: then they fail as a
    bug would (not as an orchestrator outage), killing the heartbeat."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.broken = threading.Event()

    async def heartbeat(self, worker_id: str, beat: Any) -> HeartbeatAnswer:
        if self.broken.is_set():
            raise KeyError("a bug in the heartbeat")
        return await super().heartbeat(worker_id, beat)


def rig_env(orch: OrchestratorDouble, tmp_path: Path, grace: float) -> dict[str, str]:
    """The environment the rig's container reads: the double, short intervals, ``tmp_path``."""
    return {
        "ORCHESTRATOR_BASE_URL": orch.url,
        "INTERNAL_API_KEY": orch.api_key,
        "BUFFER_WORKER_ID": "w-1",
        "GPU_CLASS": "FakeGPU",
        "FASTWAN_MODEL": "tiny",  # never loaded: the generator is the core's fake
        "HEARTBEAT_INTERVAL_S": "0.05",
        "BUFFER_POLL_INTERVAL_S": "0.05",
        "SHUTDOWN_GRACE_S": str(grace),
        "STATE_DIR": str(tmp_path / "state"),
        "OUTPUT_DIR": str(tmp_path / "outputs"),
    }


def _cannot_load(error: Exception) -> Any:
    raise error


@pytest.fixture
def make_rig(orch: OrchestratorDouble, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(
        *,
        generator: FakeGenerator | None = None,
        images: FakeImageLoader | None = None,
        load_error: Exception | None = None,
        grace: float = 25.0,
        stop_wait: float = 3.0,
        client_class: type[OrchestratorClient] = OrchestratorClient,
        running_after_end_s: float | None = None,
        retry: RetryPolicy | None = None,
        env: dict[str, str] | None = None,
        encoder: Any = None,
    ) -> Rig:
        """The container with the model's ports faked; ``load_error``: the model cannot load;
        ``client_class``: the client the worker's parts share; ``retry``: its retry rule;
        ``env``: more variables for the settings; ``encoder``: instead of the core's fake."""
        client = client_class(orch.url, orch.api_key, timeout=2.0, retry=retry or RetryPolicy(initial=0.05))
        generator = generator or FakeGenerator()
        store = InMemoryResultStore()
        sent = RecordingProgressReporter()
        settings = BufferWorkerSettings.from_env({**rig_env(orch, tmp_path, grace), **(env or {})})
        container = Container(settings=settings)
        container.worker_info.override(providers.Object(WorkerInfo("w-1", "1.0", gpu_class="FakeGPU")))
        container.worker.add_kwargs(stop_wait_s=stop_wait, final_report_s=2.0)
        container.client.override(providers.Object(client))
        container.sender.override(providers.Object(sent))
        if load_error is not None:
            container.generation.generator.override(providers.Callable(_cannot_load, load_error))
        else:
            container.generation.generator.override(providers.Object(generator))
        container.generation.images.override(providers.Object(images or FakeImageLoader()))
        container.generation.encoder.override(providers.Object(encoder or FakeEncoder()))
        container.generation.store.override(providers.Object(store))
        if running_after_end_s is not None:
            container.delivery.add_kwargs(running_after_end_s=running_after_end_s)
        rig = Rig(orch, client, container, generator, store, sent)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        if rig.thread is not None and rig.thread.is_alive():
            rig.stop_now()
            rig.thread.join(TIMEOUT)
        rig.container.shutdown_resources()


def add(orch: OrchestratorDouble, job_id: str, **fields: Any) -> str:
    return orch.add_job({**JOB, "musetalk_job_id": job_id, **fields})


def claimed_after(orch: OrchestratorDouble, buffer_job_id: str) -> bool:
    """The claim loop has moved on from ``buffer_job_id``: a claim came after its last status call."""
    requests = orch.requests()
    last = max((i for i, r in enumerate(requests) if r.ident == buffer_job_id), default=None)
    return last is not None and any(r.endpoint is Endpoint.CLAIM for r in requests[last + 1 :])


def paced(seconds_per_step: float) -> FakeGenerator:
    """The core's fake generator, with its steps taking real time (cancellation points between)."""
    return FakeGenerator(on_step=lambda _index: time.sleep(seconds_per_step))


def gated(gate: threading.Event) -> FakeGenerator:
    """A generator stuck in its first step until ``gate`` is set: a job that will not stop."""
    return FakeGenerator(on_step=lambda _index: gate.wait(TIMEOUT))
