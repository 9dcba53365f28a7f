"""SaladCloud's deletion cost: set while a job runs, back to 0 after, against a loopback IMDS
stand-in; an IMDS that is down or hangs changes nothing for the job."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fastwan_adapters.salad import DeletionCost
from fastwan_core.testing import FakeGenerator
from queue_worker.settings import QueueWorkerSettings
from tests.queue_worker.support import T2V, Fakes, fake_container, serving, settings_for

TIMEOUT_S = 10.0


class Imds:
    """A stand-in for the node's IMDS on 127.0.0.1: records every call and answers 204, once
    ``answering`` is set (a test clears it to make IMDS hang)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None, Any]] = []
        self.changed = threading.Condition()
        self.answering = threading.Event()
        self.answering.set()
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with imds.changed:
                    imds.calls.append((self.command, self.path, self.headers.get("Metadata"), body))
                    imds.changed.notify_all()
                imds.answering.wait(TIMEOUT_S)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def costs(self) -> list[int]:
        with self.changed:
            return [body["deletion_cost"] for *_, body in self.calls]

    def wait_for(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.calls) >= count, TIMEOUT_S)


@pytest.fixture
def imds() -> Iterator[Imds]:
    stand_in = Imds()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def test_a_running_job_sets_the_deletion_cost_and_idle_sets_it_back_to_0(imds: Imds, tmp_path: Path) -> None:
    fakes = Fakes()
    busy_while_running: list[list[int]] = []

    def on_step(_index: int) -> None:
        imds.wait_for(1)  # the job's first step sees the busy call arrive
        busy_while_running.append(imds.costs())

    fakes.generator = FakeGenerator(on_step=on_step)
    settings = settings_for(tmp_path, SALAD_MACHINE_ID="m-1", SALAD_IMDS_URL=imds.url)
    with serving(fake_container(settings, fakes)) as worker:
        assert worker.client.post("/generate", json=T2V).status_code == 200
        assert imds.wait_for(2)

    assert busy_while_running[0] == [100]
    assert imds.calls == [
        ("PUT", "/v1/deletion-cost", "true", {"deletion_cost": 100}),
        ("PUT", "/v1/deletion-cost", "true", {"deletion_cost": 0}),
    ]


def test_a_hanging_imds_changes_nothing_for_the_job(imds: Imds, tmp_path: Path) -> None:
    fakes = Fakes()
    settings = settings_for(tmp_path, SALAD_MACHINE_ID="m-1", SALAD_IMDS_URL=imds.url)
    imds.answering.clear()
    with serving(fake_container(settings, fakes)) as worker:
        first = worker.client.post("/generate", json=T2V)
        assert imds.wait_for(1)
        unanswered = len(imds.calls)  # the busy call still hangs: the job did not wait for it
        second = worker.client.post("/generate", json={**T2V, "musetalk_job_id": "t2v-2"})
        imds.answering.set()

    assert unanswered == 1
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["status"] == second.json()["status"] == "succeeded"
    assert list(fakes.store.objects) == ["t2v-1.mp4", "t2v-2.mp4"]


def test_a_dead_imds_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nobody listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"

    async def scenario() -> None:
        cost = DeletionCost(dead, timeout_s=1.0)
        async with cost:
            for _ in range(3):
                cost.busy()
                cost.idle()
            await cost.aclose(timeout=TIMEOUT_S)

    with caplog.at_level(logging.INFO, logger="fastwan_adapters.salad"):
        asyncio.run(scenario())

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "deletion cost" in warnings[0].getMessage()


def test_off_salad_nothing_is_set_and_on_salad_the_default_is_salads_imds(tmp_path: Path) -> None:
    assert settings_for(tmp_path).salad_imds_url is None
    assert settings_for(tmp_path, SALAD_IMDS_URL="http://127.0.0.1:1").salad_imds_url is None
    assert settings_for(tmp_path, SALAD_MACHINE_ID="m-1").salad_imds_url == "http://169.254.169.254"


def test_a_bad_imds_url_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SALAD_IMDS_URL must start with http"):
        settings_for(tmp_path, SALAD_MACHINE_ID="m-1", SALAD_IMDS_URL="169.254.169.254")


def test_the_container_builds_no_imds_client_off_salad(tmp_path: Path) -> None:
    settings: QueueWorkerSettings = settings_for(tmp_path)
    container = fake_container(settings, Fakes())
    assert container.deletion_cost() is None
