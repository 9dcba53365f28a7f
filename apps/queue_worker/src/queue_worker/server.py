"""uvicorn, set up for a worker that must drain gracefully, may end itself, and bounds its clients.

On SIGTERM the worker stops taking jobs at once (503 ``worker_shutdown``, ``/ready`` 503) but
keeps listening while the job in hand finishes: Salad's binary, which the entrypoint stops
only once this process has exited, gets a 503 for a job it sends meanwhile rather than a
refused connection, and the probes keep their answers. When ``SHUTDOWN_GRACE_S`` runs out
the job in hand is stopped at its next step and answered ``worker_shutdown``. Once no job is
in hand (or ``SHUTDOWN_GRACE_S`` + :data:`STOP_MARGIN_S` has passed) uvicorn stops as usual: it
closes the socket, lets the answer go out and runs the app's shutdown. A second signal skips
the wait (uvicorn's own handling: a second SIGINT stops at once).

Slow and idle clients are bounded by :mod:`queue_worker.connections`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
import threading
import time
from types import FrameType
from typing import Final, cast

import uvicorn
from fastapi import FastAPI

from queue_worker.connections import ACCEPT_BURST, BoundedH11Protocol, ConnectionGuard, connection_cap
from queue_worker.containers import Container
from queue_worker.slot import JobSlot

__all__ = ["STOP_MARGIN_S", "QueueServer", "build_server"]

log = logging.getLogger(__name__)

#: Time left, after the grace period, for the job in hand to reach its next step and be answered.
STOP_MARGIN_S: Final = 10.0
#: After the drain, how long uvicorn may still wait for answers being written before it cancels.
_AFTER_DRAIN_S: Final = 5


class QueueServer(uvicorn.Server):
    """uvicorn's server, which drains the job in hand before it stops listening."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        slot: JobSlot,
        grace_s: float,
        guard: ConnectionGuard,
        startup_stop: threading.Event,
    ) -> None:
        super().__init__(config)
        self._slot = slot
        self._startup_stop = startup_stop
        self._grace_s = grace_s
        self._guard = guard
        self._drain_until: float | None = None
        self._drain_logged = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first stop signal starts the drain; a second one is uvicorn's (it stops now).

        Runs in a signal handler: it only sets state (the start-up's stop too: a model download
        still being retried ends at once) and starts the job slot's grace timer.
        """
        if self._drain_until is not None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._drain_until = time.monotonic() + self._grace_s + STOP_MARGIN_S
        self._startup_stop.set()
        self._slot.begin_shutdown(self._grace_s)

    def request_stop(self) -> None:
        """Stop without a drain (used by fatal errors, which answer the job in hand first)."""
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(self._guard.handle_loop_error)
        log.info(
            "connections: at most %d open, %g s to send what a request owes",
            self._guard.cap,
            self._guard.read_timeout_s,
        )
        await super().startup(sockets)

    async def on_tick(self, counter: int) -> bool:
        self._guard.report()
        if self._drain_until is not None and not self.should_exit:
            self._drain()
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._guard.report(force=True)
        await super().shutdown(sockets)

    def _drain(self) -> None:
        busy = self._slot.busy
        if not self._drain_logged:
            self._drain_logged = True
            log.info(
                "stop requested: new jobs are answered 503; %s",
                f"waiting for job {self._slot.job_id} to be answered" if busy else "no job in hand",
            )
        if busy and time.monotonic() < (self._drain_until or 0.0):
            return
        if busy:
            log.warning(
                "the job in hand still runs %.0f s after the stop signal; stopping without it",
                self._grace_s + STOP_MARGIN_S,
            )
        self.config.timeout_graceful_shutdown = _AFTER_DRAIN_S
        self.should_exit = True


def build_server(
    app: FastAPI, container: Container, *, host: str | None = None, port: int | None = None
) -> QueueServer:
    """The server for ``app``; ``host`` and ``port`` override the settings (tests use port 0).

    Raises:
        ConfigError: the file limit is too low for the worker (see ``connections.connection_cap``).
    """
    settings = container.settings()
    guard = ConnectionGuard(cap=connection_cap())
    config = uvicorn.Config(
        app,
        host=settings.host if host is None else host,
        port=settings.port if port is None else port,
        lifespan="on",
        log_config=None,  # logging is configured once, by fastwan_adapters.logs
        access_log=False,  # probes every few seconds would drown the job lines; /generate logs its own
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s + STOP_MARGIN_S),
        # uvicorn calls the class with its own arguments; the partial adds the shared guard.
        http=cast("type[asyncio.Protocol]", functools.partial(BoundedH11Protocol, guard=guard)),
        backlog=ACCEPT_BURST,
    )
    server = QueueServer(
        config,
        slot=container.slot(),
        grace_s=settings.shutdown_grace_s,
        guard=guard,
        startup_stop=container.startup_stop(),
    )
    container.process_exit().stop_server = server.request_stop
    return server
