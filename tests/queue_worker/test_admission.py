"""What POST /generate refuses before it holds a job's body: a body not declared JSON, a busy
slot (answered without reading a byte of the body), and a body that does not arrive in time."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.queue_worker.support import T2V, Fakes, Served, fake_container, serving, settings_for, wait_until

MiB = 1024 * 1024


def post(worker: Served, job: dict[str, Any]) -> httpx.Response:
    return worker.client.post("/generate", json=job)


def open_post(
    worker: Served, content_length: int, sent: bytes = b"", *, timeout: float
) -> http.client.HTTPConnection:
    """A POST /generate whose headers declare ``content_length`` bytes of JSON, of which only
    ``sent`` is sent; the answer is read with ``getresponse()``."""
    host, port = worker.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    conn.putrequest("POST", "/generate")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(content_length))
    conn.endheaders(sent or None)
    return conn


def answer_of(conn: http.client.HTTPConnection) -> tuple[int, dict[str, Any], float]:
    """The status, the JSON body and how long the answer took to start."""
    started = time.monotonic()
    try:
        answer = conn.getresponse()
        waited = time.monotonic() - started
        return answer.status, json.loads(answer.read()), waited
    finally:
        conn.close()


@pytest.fixture
def long_job(worker: Served, fakes: Fakes) -> Iterator[None]:
    """A job holding the slot (at its first step) for the duration of the test."""
    release = threading.Event()
    fakes.generator.on_step = lambda index: release.wait(10) if index == 1 else None
    answers: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: answers.append(post(worker, {**T2V, "musetalk_job_id": "hold-1"}))
    )
    thread.start()
    try:
        wait_until(lambda: fakes.generator.steps_run == [1], 10, "the first job's first step")
        yield
    finally:
        release.set()
        thread.join(10)
    assert answers[0].status_code == 200


@pytest.mark.usefixtures("long_job")
def test_a_job_refused_busy_is_answered_before_its_body_is_sent(worker: Served) -> None:
    # 30 MiB declared (under the limit), not a byte of it sent: the answer must not wait for it.
    conn = open_post(worker, 30 * MiB, timeout=5)

    status, body, waited = answer_of(conn)

    assert status == 429
    assert body["retryable"] is True and "hold-1" in body["error"]
    assert waited < 2.0


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # what a browser's cross-origin "simple" request may send
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        None,
    ],
)
def test_a_body_not_declared_json_is_refused_415_for_good(
    worker: Served, fakes: Fakes, content_type: str | None
) -> None:
    job = {**T2V, "musetalk_job_id": "not-json-1"}
    headers = {} if content_type is None else {"Content-Type": content_type}
    before = worker.metric("fastwan_requests_rejected_total", reason="not_json")

    answer = worker.client.post("/generate", content=json.dumps(job).encode(), headers=headers)

    assert answer.status_code == 415
    body = answer.json()
    assert (body["status"], body["error_code"], body["retryable"]) == ("failed", "invalid_input", False)
    assert "Content-Type: application/json" in body["error"]
    assert (body["error_message"], body["error_type"], body["stage"]) == (
        body["error"],
        "media_error",
        "validation",
    )
    assert "not-json-1.mp4" not in fakes.store.objects
    assert worker.metric("fastwan_requests_rejected_total", reason="not_json") == before + 1


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_with_parameters_or_in_any_case_is_json(worker: Served, content_type: str) -> None:
    job = {**T2V, "musetalk_job_id": "json-ok-1"}

    answer = worker.client.post("/generate", content=json.dumps(job), headers={"Content-Type": content_type})

    assert answer.status_code == 200


def test_a_body_over_the_limit_without_a_length_is_refused_413_and_the_slot_freed(worker: Served) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(33):
            yield b"x" * MiB

    try:
        answer = worker.client.post(
            "/generate", content=chunks(), headers={"Content-Type": "application/json"}
        )
    except httpx.TransportError:  # the server answered and stopped reading before the last chunk
        answer = None
    if answer is not None:
        assert answer.status_code == 413
        assert "at most" in answer.json()["error"]

    wait_until(lambda: not worker.container.slot().busy, 5, "the slot to be freed")
    assert post(worker, {**T2V, "musetalk_job_id": "after-413"}).status_code == 200


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[Served]:
    """A worker that waits half a second for a job's body."""
    with serving(fake_container(settings_for(tmp_path, BODY_TIMEOUT_S="0.5"), Fakes())) as served:
        yield served


def test_a_body_that_stalls_is_answered_408_and_the_slot_freed(impatient: Served) -> None:
    conn = open_post(impatient, 1000, b'{"musetalk_job_id": "stall', timeout=5)

    status, body, waited = answer_of(conn)

    assert status == 408  # Salad sends it again
    assert body["status"] == "failed" and body["retryable"] is True
    assert "BODY_TIMEOUT_S" in body["error"]
    assert waited < 3.0
    assert impatient.metric("fastwan_requests_rejected_total", reason="body_timeout") == 1
    wait_until(lambda: not impatient.container.slot().busy, 5, "the slot to be freed")
    assert post(impatient, {**T2V, "musetalk_job_id": "after-stall"}).status_code == 200


def test_a_body_that_drips_is_cut_off_by_one_deadline_for_the_whole_body(impatient: Served) -> None:
    conn = open_post(impatient, 1000, b"{", timeout=5)
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(0.05):  # a byte every 50 ms: no single wait is ever long
            try:
                conn.send(b" ")
            except OSError:
                return

    dripping = threading.Thread(target=drip)
    dripping.start()
    try:
        status, _body, waited = answer_of(conn)
    finally:
        stop.set()
        dripping.join(5)

    assert status == 408
    assert waited < 3.0
