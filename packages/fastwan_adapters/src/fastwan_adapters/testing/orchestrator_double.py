"""A real HTTP orchestrator for tests: the orchestrator's side of the whole contract.

It listens on 127.0.0.1 (an ephemeral port) from a thread of its own (``serving``), hands out the jobs it is
given, checks ``X-Internal-API-Key``, answers status calls as the orchestrator does (2xx, 404
for a job it does not know, 409 for one that is not this worker's or already ended), and
records every request. Faults (a status code, a delay, a dropped connection, an answer dripped
a byte at a time) can be injected for the next N calls of an endpoint, and a standing refusal
for every status call of one job or of one status (``refuse``). Everything is thread-safe;
``wait_for`` lets a test wait for what the worker (heartbeat, progress sender) will send.
What it knows and how it answers lives in ``orchestrator_state``; this module serves it over HTTP.

    with OrchestratorDouble() as orch:
        buffer_job_id = orch.add_job({"musetalk_job_id": "j-1", "prompt": "a cat"})
        ... run the worker against orch.url with orch.api_key ...
        assert [s["status"] for s in orch.statuses(buffer_job_id)] == ["running", "succeeded"]
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from fastwan_adapters.testing.orchestrator_faults import (
    Endpoint,
    Fault,
    RecordedRequest,
    RecordingSleep,
    route,
)
from fastwan_adapters.testing.orchestrator_leases import LeaseRules
from fastwan_adapters.testing.orchestrator_state import DEFAULT_API_KEY, OrchestratorState
from fastwan_adapters.testing.serving import BackgroundServer

__all__ = ["DEFAULT_API_KEY", "Endpoint", "Fault", "OrchestratorDouble", "RecordedRequest", "RecordingSleep"]

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], double: OrchestratorDouble) -> None:
        super().__init__(address, _Handler)
        self.double = double

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that timed out and left is part of the tests; no traceback on stderr.
        log.debug(
            "orchestrator double: connection from %s ended with an error", client_address, exc_info=True
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so that a pooled client really pools
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def do_POST(self) -> None:
        self.server.double._handle(self)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        return


class OrchestratorDouble(OrchestratorState):
    """The orchestrator, on loopback, for tests.

    Args:
        api_key: the only ``X-Internal-API-Key`` accepted (anything else: 401).
        terminal_conflict: answer 409 to a status for a job already ended, as the real
            orchestrator does for a job that is no longer open.
        lease: the lease rules (``orchestrator_leases``): a job whose worker says nothing of it
            for a few heartbeat intervals, or that fails retryably, goes back to the queue.
            ``None`` (the default): a claimed job stays its worker's for good.
        clock: the lease rules' clock (``time.monotonic``).
    """

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        host: str = "127.0.0.1",
        terminal_conflict: bool = True,
        lease: LeaseRules | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(api_key, terminal_conflict=terminal_conflict, lease=lease, clock=clock)
        self._host = host
        self._closing = threading.Event()
        self._serving: BackgroundServer | None = None

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> OrchestratorDouble:
        if self._serving is not None:
            raise RuntimeError("the orchestrator double is already started")
        self._serving = BackgroundServer(_Server((self._host, 0), self), "orchestrator-double")
        self._serving.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # cuts injected delays short
        if self._serving is not None:
            self._serving.stop()
        self._serving = None

    def __enter__(self) -> OrchestratorDouble:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._serving is None:
            raise RuntimeError("the orchestrator double is not started: use it as a context manager")
        return self._serving.url

    # -- serving --------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length > 0 else b""
        try:
            body: Any = json.loads(raw) if raw else None
            readable = True
        except ValueError:
            body, readable = None, False
        path = urlsplit(handler.path).path
        endpoint, ident = route(path)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        request = RecordedRequest(handler.command, path, endpoint, ident, headers, body, time.monotonic())
        with self._changed:
            index = len(self._requests)
            self._requests.append(request)
            fault = self._take_fault(endpoint)
            if fault is None and endpoint is Endpoint.STATUS:
                refusal = next((r for r in self._refusals if r.matches(request)), None)
                fault = Fault.answer(refusal.code) if refusal is not None else None
            self._changed.notify_all()

        if fault is not None and fault.delay > 0 and self._closing.wait(fault.delay):
            fault = Fault.dropped()  # shutting down: answer nothing
        if fault is not None and fault.drop:
            self._record_answer(index, None)
            handler.close_connection = True
            _shut(handler.connection)
            return
        if fault is not None and fault.status is not None:
            code, answer = (
                fault.status,
                fault.body if fault.body is not None else {"detail": "injected fault"},
            )
            self._record_answer(index, code)
        else:
            with self._changed:
                code, answer = self._respond(request, readable)
                self._record_answer(index, code)
        if fault is not None and fault.drip > 0:
            self._drip(handler, code, answer, fault.drip)
        else:
            _send_json(handler, code, answer)

    def _drip(self, handler: _Handler, code: int, answer: Any, seconds_per_byte: float) -> None:
        data = json.dumps(answer).encode()
        head = (
            f"HTTP/1.1 {code} {handler.responses.get(code, ('',))[0]}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        handler.close_connection = True
        try:
            for byte in head.encode() + data:
                if self._closing.wait(seconds_per_byte):
                    break
                handler.wfile.write(bytes([byte]))
        except OSError:  # the client gave up: what a slow answer is for
            pass


def _send_json(handler: _Handler, code: int, answer: Any) -> None:
    data = json.dumps(answer).encode()
    try:
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:  # the client gave up (timed out) before the answer
        handler.close_connection = True


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
