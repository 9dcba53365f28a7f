"""The heartbeat thread against the orchestrator double, over HTTP with the real client."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from buffer_worker.board import JobTicket, StopReason, WorkerBoard
from buffer_worker.heartbeat import Heartbeater
from buffer_worker.metrics import WorkerMetrics
from fastwan_adapters.orchestrator import Heartbeat, HeartbeatAnswer, OrchestratorClient
from fastwan_adapters.testing import Endpoint, Fault, OrchestratorDouble
from fastwan_core import JobState, Phase, ProgressUpdate, WorkerInfo

INTERVAL = 0.05


@pytest.fixture
def client(orch: OrchestratorDouble) -> Iterator[OrchestratorClient]:
    with OrchestratorClient(orch.url, orch.api_key, timeout=2.0) as made:
        yield made


def heartbeater(client: Any, board: WorkerBoard, **options: Any) -> Heartbeater:
    return Heartbeater(
        client,
        board,
        worker=WorkerInfo("w-1", "1.2.3", gpu_class="RTX 3080"),
        interval_s=INTERVAL,
        metrics=WorkerMetrics(),
        **{"on_death": lambda _error: None, **options},
    )


def test_beats_carry_the_boards_state_at_the_interval(
    orch: OrchestratorDouble, client: OrchestratorClient
) -> None:
    board = WorkerBoard()
    board.begin(JobTicket("b-1", "j-1", started=0.0))
    board.observe("j-1", ProgressUpdate(status=JobState.RUNNING, phase=Phase.INFERENCE, progress=0.4))
    beat = heartbeater(client, board)

    beat.start()
    assert orch.wait_for(lambda o: len(o.heartbeats("w-1")) >= 6, timeout=5)
    beat.stop(timeout=2)

    assert not beat.is_alive()
    first = orch.heartbeats("w-1")[0]
    assert first == {
        "status": "busy",
        "gpu_class": "RTX 3080",
        "capacity": 1,
        "error": None,
        "current_job_id": "b-1",
        "phase": "inference",
        "progress": 0.4,
        "worker_version": "1.2.3",
    }
    times = [r.at for r in orch.requests(Endpoint.HEARTBEAT)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) < INTERVAL + 0.5
    assert sum(gaps) / len(gaps) == pytest.approx(INTERVAL, abs=0.03)  # on cadence, not interval + call time


@pytest.mark.parametrize("named", ["b-1", "j-1"])
def test_a_cancel_naming_the_job_in_hand_stops_it(
    orch: OrchestratorDouble, client: OrchestratorClient, named: str
) -> None:
    board = WorkerBoard()
    ticket = JobTicket("b-1", "j-1", started=0.0)
    board.begin(ticket)
    orch.cancel(named, "someone-else")

    assert heartbeater(client, board).beat()

    assert ticket.reason is StopReason.CANCELLED


def test_a_cancel_for_another_job_changes_nothing(
    orch: OrchestratorDouble, client: OrchestratorClient
) -> None:
    board = WorkerBoard()
    ticket = JobTicket("b-1", "j-1", started=0.0)
    board.begin(ticket)
    orch.cancel("b-2")

    heartbeater(client, board).beat()

    assert not ticket.is_set()


def test_a_failed_heartbeat_is_retried_at_the_next_tick(
    orch: OrchestratorDouble, client: OrchestratorClient
) -> None:
    orch.fail_next(Endpoint.HEARTBEAT, Fault.answer(503), times=2)
    orch.fail_next(Endpoint.HEARTBEAT, Fault.dropped())
    beat = heartbeater(client, WorkerBoard())

    beat.start()
    assert orch.wait_for(lambda o: any(r.answered_ok for r in o.requests(Endpoint.HEARTBEAT)), timeout=5)
    beat.stop(timeout=2)

    answers = [r.answer for r in orch.requests(Endpoint.HEARTBEAT)]
    assert answers[:4] == [503, 503, None, 200]


def test_the_final_heartbeat_says_stopping(orch: OrchestratorDouble, client: OrchestratorClient) -> None:
    board = WorkerBoard()
    board.set_error("cannot start: FASTWAN_MODEL must be ...")

    assert heartbeater(client, board).send_final()

    assert orch.heartbeats("w-1") == [
        {
            "status": "stopping",
            "gpu_class": "RTX 3080",
            "capacity": 1,
            "error": "cannot start: FASTWAN_MODEL must be ...",
            "worker_version": "1.2.3",
        }
    ]


class _BrokenClient:
    """A client with a bug: not an orchestrator failure, so the heartbeat thread dies of it."""

    def heartbeat(self, worker_id: str, beat: Heartbeat | Mapping[str, Any]) -> HeartbeatAnswer:
        raise KeyError("a bug")


def test_a_heartbeat_thread_that_dies_says_so() -> None:
    deaths: list[BaseException | None] = []
    died = threading.Event()

    def on_death(error: BaseException | None) -> None:
        deaths.append(error)
        died.set()

    beat = heartbeater(_BrokenClient(), WorkerBoard(), on_death=on_death)
    beat.start()

    assert died.wait(5)
    deadline = time.monotonic() + 5
    while beat.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not beat.is_alive()  # it ended before it was asked to stop
    beat.stop(timeout=2)
    assert not beat.is_alive()
    assert [type(error) for error in deaths] == [KeyError]


def test_a_stopped_heartbeat_does_not_count_as_a_death(
    orch: OrchestratorDouble, client: OrchestratorClient
) -> None:
    deaths: list[BaseException | None] = []
    beat = heartbeater(client, WorkerBoard(), on_death=deaths.append)

    beat.start()
    assert orch.wait_for(lambda o: len(o.heartbeats()) >= 1, timeout=5)
    beat.stop(timeout=2)

    assert deaths == []  # on_death: the one place a dead heartbeat is noticed
    assert not beat.is_alive()


def test_beats_carry_how_often_the_supervisor_restarted_the_worker(
    orch: OrchestratorDouble, client: OrchestratorClient
) -> None:
    assert heartbeater(client, WorkerBoard(), restarts=3).beat()
    assert heartbeater(client, WorkerBoard(), restarts=0).beat()

    assert [beat["restarts"] for beat in orch.heartbeats("w-1")] == [3, 0]
