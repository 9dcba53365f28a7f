"""The doubles' HTTP servers, served from a thread of their own while a test runs.

A test and the worker code it drives wait on each other (a worker's event loop, a blocking call
in the test), so the doubles answer from outside both: a standard-library threading server,
started and stopped here for every double alike.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """Serves ``server`` from a daemon thread named ``name`` between :meth:`start` and :meth:`stop`."""

    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        server.daemon_threads = True
        self.server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )

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
