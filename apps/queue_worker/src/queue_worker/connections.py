"""Slow, idle and too many clients: what the server holds for them is bounded.

uvicorn (h11) keeps a connection open for as long as its client likes while that client owes
it bytes: a request's headers sent in part and never finished, or the body of a request
already answered. Each costs a file descriptor; at the file limit ``accept()`` fails, asyncio
logs a traceback for every failed try (thousands a second), and ``/health`` stops answering,
so the platform would restart a healthy worker. uvicorn's own knobs do not cover it:
``timeout_keep_alive`` starts only after a response (and any byte resets it),
``limit_concurrency`` answers 503 to every request past the limit, the probes included, and
``h11_max_incomplete_event_size`` bounds the size of the headers, not the time they take.

So each connection here has a read deadline: while the client owes bytes that no handler is
waiting for (a request's headers; the rest of a body after the answer), it has
:data:`READ_TIMEOUT_S` from the moment it started owing them, however it drips them, and is
closed after. A body that a handler reads (``POST /generate``'s) is bounded by that handler
(``BODY_TIMEOUT_S``); a job that runs holds its connection as long as it runs. The open
connections are capped below the file limit (:func:`connection_cap`); at the cap a new one
makes room by closing the connection that has owed bytes longest, or is closed itself when no
connection owes any, so a probe still gets in. What was closed, and any ``accept()`` that
failed all the same, is counted and logged once per :data:`REPORT_EVERY_S`, never per
connection.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any, Final

import attrs
from uvicorn.protocols.http.h11_impl import H11Protocol

from fastwan_adapters.config import ConfigError

__all__ = [
    "ACCEPT_BURST",
    "MAX_CONNECTIONS",
    "READ_TIMEOUT_S",
    "REPORT_EVERY_S",
    "BoundedH11Protocol",
    "ConnectionGuard",
    "connection_cap",
]

log = logging.getLogger(__name__)

#: Salad's binary holds one connection, its probes and a metrics scraper a few more.
MAX_CONNECTIONS: Final = 256
#: File descriptors kept for the process itself: the model's files, CUDA, B2 and the orchestrator.
FILE_RESERVE: Final = 256
#: Below this many connections the worker cannot serve its probes beside a job.
MIN_CONNECTIONS: Final = 8
#: Connections accepted in one go (asyncio's accept loop, and the listen backlog): each holds a
#: file descriptor before its turn to be counted, so the burst is part of the margin.
ACCEPT_BURST: Final = 64
#: A client on the same machine or network sends a request's headers in milliseconds.
READ_TIMEOUT_S: Final = 10.0
REPORT_EVERY_S: Final = 10.0
_ACCEPT_FAILED: Final = "socket.accept() out of system resource"


def connection_cap(wanted: int = MAX_CONNECTIONS) -> int:
    """How many connections may be open at once, after raising the soft file limit to the hard one.

    Raises:
        ConfigError: the file limit leaves too few descriptors for the worker and its probes.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:  # a container may forbid it: the soft limit stays
            log.warning("could not raise the file limit from %d to %d: %s", soft, target, error)
    cap = min(wanted, soft - FILE_RESERVE - ACCEPT_BURST)
    if cap < MIN_CONNECTIONS:
        needed = FILE_RESERVE + ACCEPT_BURST + MIN_CONNECTIONS
        raise ConfigError(
            f"the file limit (RLIMIT_NOFILE, ulimit -n) is {soft}: the queue worker needs at least {needed} "
            f"({FILE_RESERVE} for itself, {ACCEPT_BURST + MIN_CONNECTIONS} for connections); raise it "
            "(docker run --ulimit nofile=...)"
        )
    return cap


@attrs.define
class ConnectionGuard:
    """What every connection of one server shares: the cap, and what was closed or refused.

    Attributes:
        cap: the most connections open at once (:func:`connection_cap`).
        read_timeout_s: how long a client may owe bytes nobody reads (:data:`READ_TIMEOUT_S`).
    """

    cap: int
    read_timeout_s: float = READ_TIMEOUT_S
    shed: int = 0
    timed_out: int = 0
    accept_failures: int = 0
    _reported: float = attrs.field(factory=time.monotonic)

    def handle_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The event loop's error handler: a failed ``accept()`` is counted; the rest as asyncio would."""
        if context.get("message") == _ACCEPT_FAILED:
            self.accept_failures += 1
            return
        loop.default_exception_handler(context)

    def report(self, *, force: bool = False) -> None:
        """Log what was closed or refused since the last report, once per :data:`REPORT_EVERY_S`."""
        now = time.monotonic()
        if not force and now - self._reported < REPORT_EVERY_S:
            return
        shed, timed_out, failures = self.shed, self.timed_out, self.accept_failures
        self.shed = self.timed_out = self.accept_failures = 0
        since, self._reported = now - self._reported, now
        if shed or failures:
            log.warning(
                "in the last %.0f s: %d connections closed at the cap of %d open ones, %d more past their "
                "%g s read deadline, %d accept() calls failed for lack of file descriptors",
                since,
                shed,
                self.cap,
                timed_out,
                self.read_timeout_s,
                failures,
            )
        elif timed_out:
            log.info(
                "in the last %.0f s: %d connections closed past their %g s read deadline",
                since,
                timed_out,
                self.read_timeout_s,
            )


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 connection, with a read deadline and a place under the guard's cap."""

    def __init__(self, *args: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._deadline: asyncio.TimerHandle | None = None
        self.owing_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._follow_state()
        if sum(not connection.transport.is_closing() for connection in self.connections) > self._guard.cap:
            self._make_room()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_state()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.owing_since = None
        super().connection_lost(exc)

    # -- the read deadline ----------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """A handler holds this connection's request (it may read the body, or run a job)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _follow_state(self) -> None:
        """Arm the deadline when the client starts owing bytes nobody reads; disarm it when a
        handler takes the request. Bytes that trickle in do not move it."""
        if self.transport.is_closing():
            return
        if self.serving:
            self._disarm()
            self.owing_since = None
        elif self._deadline is None:
            self.owing_since = time.monotonic()
            self._deadline = self.loop.call_later(self._guard.read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _read_timed_out(self) -> None:
        self._deadline = None
        if not self.serving and not self.transport.is_closing():
            self._guard.timed_out += 1
            self.transport.close()

    # -- the cap --------------------------------------------------------------------------

    def _make_room(self) -> None:
        """Close the connection that has owed bytes longest (this one if no other owes any)."""
        owing = [
            connection
            for connection in self.connections
            if isinstance(connection, BoundedH11Protocol)
            and connection is not self
            and connection.owing_since is not None
            and not connection.transport.is_closing()
        ]
        victim = min(owing, key=lambda connection: connection.owing_since or 0.0) if owing else self
        self._guard.shed += 1
        victim._disarm()
        victim.transport.close()
