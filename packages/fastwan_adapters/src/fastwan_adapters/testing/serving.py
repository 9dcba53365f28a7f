"""The doubles' threads: their HTTP servers, and the loops of a double that plays a process
(Salad's job-queue binary), each run from a thread of its own while a test runs.

A test and the worker code it drives wait on each other (a worker's event loop, a blocking call
in the test), so the doubles work from outside both: standard-library threading servers and
plain loops, started here for every double alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer

__all__ = ["BackgroundServer", "background"]


def background(target: Callable[[], object], name: str) -> threading.Thread:
    """A daemon thread, not started, that runs ``target`` (a double's loop)."""
    return threading.Thread(target=target, name=name, daemon=True)


class BackgroundServer:
    """Serves ``server`` from a daemon thread named ``name`` between :meth:`start` and :meth:`stop`."""

    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        server.daemon_threads = True
        self.server = server
        self._thread = background(lambda: server.serve_forever(poll_interval=0.05), name)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
