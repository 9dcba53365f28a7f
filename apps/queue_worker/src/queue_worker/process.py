"""How the worker ends its own process when it cannot go on, and with which exit code
(:class:`fastwan_adapters.exit_code.ExitCode`, the README's table).

A worker whose model failed to load, or whose GPU was left unusable by a job, must not linger:
the platform only replaces a container that exits (or fails its probes), so the worker reports
the reason on ``/health`` and ``/ready`` for a few seconds, then asks the server to stop, and
``main`` exits with the code recorded here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import attrs

from fastwan_adapters.exit_code import ExitCode

__all__ = ["ProcessExit"]

log = logging.getLogger(__name__)


@attrs.define
class ProcessExit:
    """Records why the process must end and tells the server to stop (on the event loop).

    Attributes:
        stop_server: set by whoever runs the server (``uvicorn.Server.should_exit``); until
            then a request is only recorded.
    """

    stop_server: Callable[[], None] | None = None
    code: ExitCode = ExitCode.OK
    reason: str | None = None

    def request(self, code: ExitCode, reason: str, *, after_s: float = 0.0) -> None:
        """End the process with ``code`` in ``after_s`` seconds; the first reason given wins."""
        if self.code is not ExitCode.OK:
            return
        self.code, self.reason = code, reason
        log.error("the worker will exit with code %d in %.1f s: %s", code, after_s, reason)
        asyncio.get_running_loop().call_later(after_s, self._stop)

    def _stop(self) -> None:
        if self.stop_server is not None:
            self.stop_server()
