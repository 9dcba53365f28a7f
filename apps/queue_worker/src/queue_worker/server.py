"""uvicorn, set up for a worker that must drain gracefully and may end itself.

On SIGTERM uvicorn stops listening and waits for the requests in flight; the worker also needs
to know at once (not when uvicorn is done waiting) so that it refuses new jobs and can stop the
one in hand when ``SHUTDOWN_GRACE_S`` runs out, early enough to answer it ``worker_shutdown``
before uvicorn's own timeout (``SHUTDOWN_GRACE_S`` + :data:`STOP_MARGIN_S`) cuts it off.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import FrameType
from typing import Final

import uvicorn
from fastapi import FastAPI

from queue_worker.containers import Container

__all__ = ["STOP_MARGIN_S", "QueueServer", "build_server"]

#: Time left, after the grace period, for the job in hand to reach its next step and be answered.
STOP_MARGIN_S: Final = 10.0


class QueueServer(uvicorn.Server):
    """uvicorn's server, which also tells the worker as soon as a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, on_stop_signal: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop_signal = on_stop_signal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._on_stop_signal()

    def request_stop(self) -> None:
        """Stop as SIGTERM would, minus the signal: drain and exit (used by fatal errors)."""
        self.should_exit = True


def build_server(
    app: FastAPI, container: Container, *, host: str | None = None, port: int | None = None
) -> QueueServer:
    """The server for ``app``; ``host`` and ``port`` override the settings (tests use port 0)."""
    settings = container.settings()
    slot = container.slot()
    config = uvicorn.Config(
        app,
        host=settings.host if host is None else host,
        port=settings.port if port is None else port,
        lifespan="on",
        log_config=None,  # logging is configured once, by fastwan_adapters.logs
        access_log=False,  # probes every few seconds would drown the job lines; /generate logs its own
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s + STOP_MARGIN_S),
    )
    server = QueueServer(config, on_stop_signal=lambda: slot.begin_shutdown(settings.shutdown_grace_s))
    container.process_exit().stop_server = server.request_stop
    return server
