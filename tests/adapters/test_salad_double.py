"""The Salad job-queue double against scripted containers: what its binaries send, when, and what
the queue makes of each answer."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fastwan_adapters.testing import JobState, Outcome, SaladQueueDouble
from fastwan_adapters.testing.salad_double import MAX_OUTPUT_BYTES

DROP = "drop"
HOLD = "hold"  # answer 200 once released, or notice the caller leave


class Container:
    """A container's HTTP side: ``/ready`` as set, ``/generate`` answering each job's script.

    ``scripts[name]`` lists the answers to the job whose input has ``"name": name``, one per
    attempt: a status code, ``DROP`` (close without an answer) or ``HOLD``.
    """

    def __init__(self) -> None:
        self.ready = 200
        self.scripts: dict[str, list[Any]] = {}
        self.received: list[tuple[dict[str, str], Any]] = []
        self.left: list[str] = []  # jobs whose caller hung up while held
        self.release = threading.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.bodies: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        name = body["name"]
        with self._lock:
            self.received.append(({k.lower(): v for k, v in handler.headers.items()}, body))
            action = self.scripts.get(name, [200]).pop(0) if self.scripts.get(name) else 200
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if action == DROP:
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            if action == HOLD:
                while not self.release.wait(0.02):
                    if _hung_up(handler.connection):
                        with self._lock:
                            self.left.append(name)
                        return
                action = 200
            data = self.bodies.get(name, json.dumps({"status": "ok", "name": name, "code": action}).encode())
            handler.send_response(action)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        finally:
            with self._lock:
                self.in_flight -= 1


def _hung_up(connection: socket.socket) -> bool:
    readable, _, _ = select.select([connection], [], [], 0)
    return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""


def _handler(container: Container) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(container.ready if self.path == "/ready" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            container.answer(self)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    made = [Container(), Container()]
    yield made
    for container in made:
        container.close()


@pytest.fixture
def salad() -> Iterator[SaladQueueDouble]:
    with SaladQueueDouble(readiness_period_s=0.05, readiness_timeout_s=1.0) as double:
        yield double


def settled(salad: SaladQueueDouble, *job_ids: str, timeout: float = 10.0) -> None:
    done = {JobState.COMPLETED, JobState.FAILED}
    assert salad.wait_for(lambda s: all(s.job(j).state in done for j in job_ids), timeout), [
        salad.job(j) for j in job_ids
    ]


def test_no_job_is_taken_before_ready_then_it_is_posted_as_the_binary_posts_it(containers, salad):
    container = containers[0]
    container.ready = 503
    job_id = salad.add_job({"name": "a", "prompt": "a cat"})
    salad.attach("node-1", container.url)
    time.sleep(0.3)
    assert container.received == [] and salad.job(job_id).state is JobState.PENDING
    assert not salad.ready("node-1")

    container.ready = 200
    settled(salad, job_id)

    ((headers, body),) = container.received
    assert headers["content-type"] == "application/json"
    assert headers["salad-job-id"] == job_id
    assert body == {"name": "a", "prompt": "a cat"}
    (attempt,) = salad.attempts(job_id)
    assert (attempt.number, attempt.node, attempt.outcome, attempt.status) == (
        1,
        "node-1",
        Outcome.COMPLETED,
        200,
    )
    assert salad.job(job_id).output == attempt.body
    assert attempt.output() == {"status": "ok", "name": "a", "code": 200}


def test_each_node_posts_one_job_at_a_time(containers, salad):
    for container in containers:
        container.scripts = {name: [HOLD] for name in "abcd"}
    job_ids = [salad.add_job({"name": name}) for name in "abcd"]
    salad.attach("node-1", containers[0].url)
    salad.attach("node-2", containers[1].url)

    assert salad.wait_for(lambda s: s.in_flight("node-1") and s.in_flight("node-2"))
    time.sleep(0.2)
    assert [c.in_flight for c in containers] == [1, 1]
    assert sum(job.state is JobState.PENDING for job in salad.jobs()) == 2
    for container in containers:
        container.release.set()
    settled(salad, *job_ids)

    assert [c.most_in_flight for c in containers] == [1, 1]
    assert {a.outcome for a in salad.attempts()} == {Outcome.COMPLETED}


def test_408_429_5xx_and_a_dropped_connection_run_the_job_again_three_times_at_most(containers, salad):
    shared = {"doomed": [503, 408, 429, DROP], "saved": [500, 200]}  # the job's answers, wherever it runs
    for container in containers:
        container.scripts = shared
    doomed, saved = salad.add_job({"name": "doomed"}), salad.add_job({"name": "saved"})
    salad.attach("node-1", containers[0].url)
    salad.attach("node-2", containers[1].url)

    settled(salad, doomed, saved)

    assert [(a.number, a.outcome, a.status) for a in salad.attempts(doomed)] == [
        (1, Outcome.REJECTED, 503),
        (2, Outcome.REJECTED, 408),
        (3, Outcome.REJECTED, 429),
        (4, Outcome.DROPPED, None),
    ]
    assert salad.job(doomed).state is JobState.FAILED
    assert [(a.outcome, a.status) for a in salad.attempts(saved)] == [
        (Outcome.REJECTED, 500),
        (Outcome.COMPLETED, 200),
    ]
    assert salad.job(saved).state is JobState.COMPLETED


@pytest.mark.parametrize("status", [200, 400, 404, 413, 422, 424, 499])
def test_any_other_status_completes_the_job_with_the_body_as_its_output(containers, salad, status):
    containers[0].scripts = {"once": [status]}
    job_id = salad.add_job({"name": "once"})
    salad.attach("node-1", containers[0].url)

    settled(salad, job_id)

    (attempt,) = salad.attempts(job_id)
    assert (attempt.outcome, attempt.status) == (Outcome.COMPLETED, status)
    assert json.loads(salad.job(job_id).output or b"") == {"status": "ok", "name": "once", "code": status}


def test_an_output_over_10_mb_is_refused_by_the_queue_and_the_job_rejected(containers, salad):
    containers[0].bodies["huge"] = b"x" * (MAX_OUTPUT_BYTES + 1)
    containers[0].scripts = {"huge": [200, 200]}
    job_id = salad.add_job({"name": "huge"})
    salad.attach("node-1", containers[0].url)

    assert salad.wait_for(lambda s: len(s.attempts(job_id)) >= 1, timeout=10)
    assert salad.attempts(job_id)[0].outcome is Outcome.REJECTED
    salad.stop("node-1")


def test_stop_drops_the_request_in_flight_and_the_job_is_neither_completed_nor_rejected(containers, salad):
    containers[0].scripts = {"held": [HOLD]}
    job_id = salad.add_job({"name": "held"})
    salad.attach("node-1", containers[0].url)
    assert salad.wait_for(lambda s: containers[0].in_flight == 1)

    assert salad.stop("node-1") == job_id

    deadline = time.monotonic() + 5
    while containers[0].left != ["held"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert containers[0].left == ["held"]  # the container saw its caller hang up
    (attempt,) = salad.attempts(job_id)
    assert (attempt.outcome, attempt.status) == (Outcome.STOPPED, None)
    assert salad.job(job_id).state is JobState.PENDING and salad.job(job_id).output is None

    salad.attach("node-1", containers[0].url)  # the binary started again (or another node)
    settled(salad, job_id)
    assert [(a.number, a.outcome) for a in salad.attempts(job_id)] == [
        (1, Outcome.STOPPED),
        (2, Outcome.COMPLETED),
    ]


def test_readiness_lost_stops_new_jobs_but_not_the_one_in_hand(containers):
    container = containers[0]
    container.scripts = {"first": [HOLD]}
    with SaladQueueDouble(readiness_period_s=0.05, failure_threshold=3) as salad:
        first = salad.add_job({"name": "first"})
        salad.attach("node-1", container.url)
        assert salad.wait_for(lambda s: s.in_flight("node-1") == first)
        second = salad.add_job({"name": "second"})
        container.ready = 503
        assert salad.wait_for(lambda s: not s.ready("node-1"))
        container.release.set()
        settled(salad, first)
        time.sleep(0.3)

        assert salad.job(second).state is JobState.PENDING
        assert [body["name"] for _, body in container.received] == ["first"]
        container.ready = 200
        settled(salad, second)


def test_a_container_gone_since_its_last_ready_answer_fails_each_attempt_it_gets():
    container = Container()
    with SaladQueueDouble(readiness_period_s=30.0) as salad:  # one readiness answer, then none
        salad.attach("node-1", container.url)
        assert salad.wait_for(lambda s: s.ready("node-1"))
        container.close()  # connections refused from now on
        job_id = salad.add_job({"name": "gone"})

        settled(salad, job_id)

        assert [(a.outcome, a.status) for a in salad.attempts(job_id)] == [(Outcome.DROPPED, None)] * 4
        assert salad.job(job_id).state is JobState.FAILED
