"""A real HTTP orchestrator for tests: the orchestrator's side of the whole contract.

It listens on 127.0.0.1 (an ephemeral port) in a background thread, hands out the jobs it is
given, checks ``X-Internal-API-Key``, answers status calls as the orchestrator does (2xx, 404
for a job it does not know, 409 for one that is not this worker's or already ended), and
records every request. Faults (a status code, a delay, a dropped connection, an answer dripped
a byte at a time) can be injected for the next N calls of an endpoint, and a standing refusal
for every status call of one job or of one status (``refuse``). Everything is thread-safe;
``wait_for`` lets a test wait for what a background thread (heartbeat, progress sender) will send.

    with OrchestratorDouble() as orch:
        buffer_job_id = orch.add_job({"musetalk_job_id": "j-1", "prompt": "a cat"})
        ... run the worker against orch.url with orch.api_key ...
        assert [s["status"] for s in orch.statuses(buffer_job_id)] == ["running", "succeeded"]
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from fastwan_adapters.testing.orchestrator_faults import (
    Endpoint,
    Fault,
    RecordedRequest,
    RecordingSleep,
    Refusal,
    route,
)

__all__ = ["DEFAULT_API_KEY", "Endpoint", "Fault", "OrchestratorDouble", "RecordedRequest", "RecordingSleep"]

log = logging.getLogger(__name__)

DEFAULT_API_KEY: Final = "test-internal-key"
_TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
_STATUSES: Final = _TERMINAL | {"running"}


@attrs.define
class _Slot:
    job: dict[str, Any]
    state: str = "queued"
    worker_id: str | None = None
    gone_status: int | None = None


@attrs.define
class _Armed:
    fault: Fault
    remaining: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True

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


class OrchestratorDouble:
    """The orchestrator, in a thread, for tests.

    Args:
        api_key: the only ``X-Internal-API-Key`` accepted (anything else: 401).
        terminal_conflict: answer 409 to a status for a job already ended, as the real
            orchestrator does for a job that is no longer open.
    """

    def __init__(
        self, api_key: str = DEFAULT_API_KEY, *, host: str = "127.0.0.1", terminal_conflict: bool = True
    ) -> None:
        self.api_key = api_key
        self.terminal_conflict = terminal_conflict
        self._host = host
        self._changed = threading.Condition(threading.RLock())
        self._closing = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._slots: dict[str, _Slot] = {}
        self._queue: deque[str] = deque()
        self._faults: dict[Endpoint, deque[_Armed]] = {endpoint: deque() for endpoint in Endpoint}
        self._cancels: set[str] = set()
        self._refusals: list[Refusal] = []
        self._next_id = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> OrchestratorDouble:
        if self._server is not None:
            raise RuntimeError("the orchestrator double is already started")
        self._server = _Server((self._host, 0), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="orchestrator-double",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # cuts injected delays short
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> OrchestratorDouble:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("the orchestrator double is not started: use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- arranging ------------------------------------------------------------------------

    def add_job(self, job: Mapping[str, Any], *, buffer_job_id: str | None = None) -> str:
        """Queue a job for claims (handed out first in, first out); returns its buffer job id.

        The job is handed out as given (it may be invalid, on purpose) with ``buffer_job_id``
        set: the one passed, the job's own, or a new ``b-0001``-style id.
        """
        with self._changed:
            if buffer_job_id is None:
                buffer_job_id = job.get("buffer_job_id") or self._new_id()
            if buffer_job_id in self._slots:
                raise ValueError(f"buffer_job_id {buffer_job_id!r} is already in the double's queue")
            self._slots[buffer_job_id] = _Slot({**job, "buffer_job_id": buffer_job_id})
            self._queue.append(buffer_job_id)
            self._changed.notify_all()
        return buffer_job_id

    def hand_out_again(self, buffer_job_id: str) -> None:
        """Queue a job again as it was, open, for the next claim: an orchestrator that lost
        the job's status, or retries it under the same id."""
        with self._changed:
            slot = self._slot(buffer_job_id)
            slot.state, slot.worker_id = "queued", None
            self._queue.append(buffer_job_id)
            self._changed.notify_all()

    def take_away(self, buffer_job_id: str, status: int = 409) -> None:
        """From now on, status calls for this job get ``status`` (404 or 409): it is no longer
        the worker's (reassigned, expired, deleted)."""
        with self._changed:
            self._slot(buffer_job_id).gone_status = status

    def cancel(self, *job_ids: str) -> None:
        """Name these ids in ``cancel_job_ids`` of every heartbeat answer until cleared."""
        with self._changed:
            self._cancels.update(job_ids)

    def clear_cancels(self) -> None:
        with self._changed:
            self._cancels.clear()

    def fail_next(self, endpoint: Endpoint, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` calls of ``endpoint`` (faults queue up in order)."""
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._changed:
            self._faults[endpoint].append(_Armed(fault, times))

    def refuse(self, code: int = 500, *, buffer_job_id: str | None = None, status: str | None = None) -> None:
        """Answer ``code`` to every status call of ``buffer_job_id`` and/or carrying ``status``
        (e.g. ``"running"``) until :meth:`clear_refusals`; other status calls go through."""
        if buffer_job_id is None and status is None:
            raise ValueError("refuse needs a buffer_job_id, a status or both (fail_next refuses all)")
        with self._changed:
            self._refusals.append(Refusal(code, buffer_job_id, status))

    def clear_refusals(self) -> None:
        with self._changed:
            self._refusals.clear()

    def clear_faults(self, endpoint: Endpoint | None = None) -> None:
        """Forget the faults still armed (for one endpoint, or all)."""
        with self._changed:
            for armed in self._faults.values() if endpoint is None else [self._faults[endpoint]]:
                armed.clear()

    # -- querying -------------------------------------------------------------------------

    def requests(self, endpoint: Endpoint | None = None) -> list[RecordedRequest]:
        with self._changed:
            return [r for r in self._requests if endpoint is None or r.endpoint is endpoint]

    def claims(self) -> list[Any]:
        return [r.body for r in self.requests(Endpoint.CLAIM)]

    def heartbeats(self, worker_id: str | None = None) -> list[Any]:
        return [
            r.body for r in self.requests(Endpoint.HEARTBEAT) if worker_id is None or r.ident == worker_id
        ]

    def statuses(self, buffer_job_id: str, *, recorded_only: bool = True) -> list[Any]:
        """Status bodies for a job: those it recorded (answered 2xx), or every one received."""
        return [
            r.body
            for r in self.requests(Endpoint.STATUS)
            if r.ident == buffer_job_id and (r.answered_ok or not recorded_only)
        ]

    def terminal_statuses(self, buffer_job_id: str) -> list[Any]:
        """Recorded terminal statuses; the contract allows exactly one per claimed job."""
        return [body for body in self.statuses(buffer_job_id) if body.get("status") in _TERMINAL]

    def progress(self, job_id: str) -> list[Any]:
        return [r.body for r in self.requests(Endpoint.PROGRESS) if r.ident == job_id]

    def job_state(self, buffer_job_id: str) -> str:
        """``queued``, ``claimed``, or the last recorded status."""
        with self._changed:
            return self._slot(buffer_job_id).state

    def wait_for(self, condition: Callable[[OrchestratorDouble], bool], timeout: float = 5.0) -> bool:
        """Wait until ``condition(self)`` holds (re-checked on every request); ``False`` on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(self), timeout)

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

    def _respond(self, request: RecordedRequest, readable: bool) -> tuple[int, Any]:
        refusal = self._refusal(request, readable)
        if refusal is not None:
            return refusal
        if request.endpoint is Endpoint.CLAIM:
            return self._claim(request.body)
        if request.endpoint is Endpoint.HEARTBEAT:
            answer: dict[str, Any] = {"detail": "ok"}
            if self._cancels:
                answer["cancel_job_ids"] = sorted(self._cancels)
            return 200, answer
        if request.endpoint is Endpoint.STATUS:
            return self._status(request.ident or "", request.body)
        return 200, {"detail": "ok"}

    def _refusal(self, request: RecordedRequest, readable: bool) -> tuple[int, Any] | None:
        if request.endpoint is None:
            return 404, {"detail": "Not Found"}
        if request.method != "POST":
            return 405, {"detail": "Method Not Allowed"}
        given = request.headers.get("x-internal-api-key", "").encode()
        if not hmac.compare_digest(given, self.api_key.encode()):
            return 401, {"detail": "Invalid internal API key"}
        if not readable or not isinstance(request.body, dict):
            return 422, {"detail": "the body must be a JSON object"}
        return None

    def _claim(self, body: dict[str, Any]) -> tuple[int, Any]:
        worker_id = body.get("worker_id")
        if not isinstance(worker_id, str) or not worker_id:
            return 422, {"detail": "worker_id is required"}
        if not self._queue:
            return 200, {"job": None, "error": None}
        slot = self._slots[self._queue.popleft()]
        slot.state, slot.worker_id = "claimed", worker_id
        return 200, {"job": dict(slot.job), "error": None}

    def _status(self, buffer_job_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        slot = self._slots.get(buffer_job_id)
        if slot is None:
            return 404, {"detail": f"buffer job {buffer_job_id} not found"}
        if slot.gone_status is not None:
            return slot.gone_status, {
                "detail": f"buffer job {buffer_job_id} is no longer assigned to this worker"
            }
        status = body.get("status")
        if status not in _STATUSES:
            return 422, {"detail": f"status must be one of {sorted(_STATUSES)}, got {status!r}"}
        sender = body.get("worker_id")
        if slot.state == "queued" or (sender is not None and sender != slot.worker_id):
            return 409, {"detail": f"buffer job {buffer_job_id} is not claimed by this worker"}
        if slot.state in _TERMINAL and self.terminal_conflict:
            return 409, {"detail": f"buffer job {buffer_job_id} is already {slot.state}"}
        slot.state = status
        return 200, {"detail": "ok"}

    def _take_fault(self, endpoint: Endpoint | None) -> Fault | None:
        if endpoint is None or not self._faults[endpoint]:
            return None
        armed = self._faults[endpoint][0]
        armed.remaining -= 1
        if armed.remaining == 0:
            self._faults[endpoint].popleft()
        return armed.fault

    def _record_answer(self, index: int, code: int | None) -> None:
        with self._changed:
            self._requests[index] = attrs.evolve(self._requests[index], answer=code)
            self._changed.notify_all()

    def _slot(self, buffer_job_id: str) -> _Slot:
        try:
            return self._slots[buffer_job_id]
        except KeyError:
            raise KeyError(f"buffer_job_id {buffer_job_id!r} was never added to the double") from None

    def _new_id(self) -> str:
        self._next_id += 1
        return f"b-{self._next_id:04d}"


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
