"""The claim loop in-process, wired as the container wires it: the core's fakes for the model, the
real client, outbox, journal and heartbeat against the orchestrator double (``make_rig``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from buffer_worker.board import WorkerBoard
from buffer_worker.control import StopControl
from buffer_worker.heartbeat import Heartbeater
from buffer_worker.metrics import WorkerMetrics
from buffer_worker.progress import BoardProgressReporter
from buffer_worker.worker import BufferWorker
from fastwan_adapters.clock import MonotonicClock
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.orchestrator import (
    Backoff,
    ClaimJournal,
    HeartbeatAnswer,
    OrchestratorClient,
    StatusOutbox,
)
from fastwan_adapters.testing import Endpoint, OrchestratorDouble
from fastwan_core import GenerateVideo, WorkerInfo
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
    orch: OrchestratorDouble
    client: OrchestratorClient
    board: WorkerBoard
    control: StopControl
    outbox: StatusOutbox
    generator: FakeGenerator
    store: InMemoryResultStore
    sent_progress: RecordingProgressReporter
    worker: BufferWorker
    thread: threading.Thread | None = None
    exit_code: ExitCode | None = None

    def start(self) -> Rig:
        def run() -> None:
            self.exit_code = self.worker.run()

        self.thread = threading.Thread(target=run, name="test-claim-loop", daemon=True)
        self.thread.start()
        return self

    def join(self, timeout: float = TIMEOUT) -> ExitCode | None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the claim loop did not end"
        return self.exit_code

    def wait(self, condition: Callable[[OrchestratorDouble], Any], what: str) -> None:
        assert self.orch.wait_for(condition, timeout=TIMEOUT), f"timed out waiting for {what}"

    def running(self, buffer_job_id: str) -> Callable[[OrchestratorDouble], bool]:
        return lambda o: bool(o.statuses(buffer_job_id))

    def ended(self, buffer_job_id: str) -> Callable[[OrchestratorDouble], bool]:
        return lambda o: bool(o.terminal_statuses(buffer_job_id))


class Sender:
    """The heartbeat's port, passed through to the client until ``broken`` is set: then it
    fails as a bug would (not as an orchestrator outage), killing the heartbeat thread."""

    def __init__(self, client: OrchestratorClient) -> None:
        self.client = client
        self.broken = threading.Event()

    def heartbeat(self, worker_id: str, beat: Any) -> HeartbeatAnswer:
        if self.broken.is_set():
            raise KeyError("a bug in the heartbeat")
        return self.client.heartbeat(worker_id, beat)


@pytest.fixture
def make_rig(orch: OrchestratorDouble, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(
        *,
        generator: FakeGenerator | None = None,
        grace: float = 25.0,
        stop_wait: float = 3.0,
        load: Callable[[GenerateVideo], GenerateVideo] = lambda usecase: usecase,
        heartbeat_sender: Callable[[OrchestratorClient], Any] = lambda client: client,
        claim_client: Callable[[OrchestratorClient, StopControl], Any] = lambda client, _control: client,
        **worker_options: Any,
    ) -> Rig:
        client = OrchestratorClient(orch.url, orch.api_key, timeout=2.0, backoff=Backoff(initial=0.05))
        board = WorkerBoard()
        control = StopControl(shutdown_grace_s=grace, stop_wait_s=stop_wait, final_report_s=2.0)
        metrics = WorkerMetrics()
        outbox = StatusOutbox(tmp_path / "state")
        generator = generator or FakeGenerator()
        store = InMemoryResultStore()
        sent = RecordingProgressReporter()
        usecase = GenerateVideo(
            FakeImageLoader(),
            generator,
            FakeEncoder(),
            store,
            BoardProgressReporter(sent, board),
            MonotonicClock(),
            WorkerInfo("w-1", "1.0"),
        )
        heartbeat = Heartbeater(
            heartbeat_sender(client),
            board,
            worker_id="w-1",
            gpu_class="FakeGPU",
            worker_version="1.0",
            interval_s=0.05,
            metrics=metrics,
            on_death=control.side_task_died,
        )
        worker = BufferWorker(
            client=claim_client(client, control),
            outbox=outbox,
            journal=ClaimJournal(tmp_path / "state"),
            heartbeat=heartbeat,
            board=board,
            control=control,
            load_usecase=lambda: load(usecase),
            progress=sent,
            metrics=metrics,
            clock=MonotonicClock(),
            worker_id="w-1",
            gpu_class="FakeGPU",
            worker_version="1.0",
            poll_interval_s=0.05,
            **worker_options,
        )
        rig = Rig(orch, client, board, control, outbox, generator, store, sent, worker)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.control.abort_now()
        if rig.thread is not None:
            rig.thread.join(TIMEOUT)
        rig.client.close()


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
