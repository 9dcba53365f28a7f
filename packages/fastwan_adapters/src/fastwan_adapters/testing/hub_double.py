"""A Hugging Face Hub on loopback, enough of it for ``snapshot_download`` and ``hf_hub_download``.

It serves model repositories held in memory over real HTTP (the repository info, the file
tree, ``resolve`` with the headers huggingface_hub checks) and answers the way the Hub does
when a repository is missing or gated or a file is missing, so that the real library raises
its real errors. Faults (an HTTP status, or a connection dropped without an answer) can be put
in front of chosen requests, for the next N of them or for good. Point huggingface_hub at it
with ``HF_ENDPOINT=hub.url`` (read at its import: set it for a child process) or ``endpoint=``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import attrs

from fastwan_adapters.testing.serving import BackgroundServer

__all__ = ["DROP", "HubDouble", "HubFault"]

#: A fault's ``status`` that closes the connection without any answer.
DROP: Final = 0
_COMMIT: Final = "0123456789abcdef0123456789abcdef01234567"


@attrs.define
class HubFault:
    """Answer ``status`` (or drop, with ``DROP``) to requests matching ``method`` and ``path_part``.

    Attributes:
        times: how many matching requests get the fault; None: all of them.
    """

    status: int
    method: str | None = None
    path_part: str = ""
    times: int | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path_part in path


class HubDouble:
    """The Hub at ``url`` serving ``repos`` (``{"org/name": {"path/in/repo": b"bytes"}}``).

    ``gated`` repositories answer 403 ``GatedRepo`` to everyone. ``requests`` records
    ``(method, path)`` of every request, faulted ones included. Use as a context manager.
    """

    def __init__(
        self, repos: Mapping[str, Mapping[str, bytes]], *, gated: frozenset[str] = frozenset()
    ) -> None:
        self.repos = {repo: dict(files) for repo, files in repos.items()}
        self.gated = gated
        self.requests: list[tuple[str, str]] = []
        self._faults: list[HubFault] = []
        self._lock = threading.Lock()
        self._serving = BackgroundServer(ThreadingHTTPServer(("127.0.0.1", 0), _handler(self)), "hub-double")

    @property
    def url(self) -> str:
        return self._serving.url

    def fail(self, fault: HubFault) -> None:
        """Put ``fault`` in front of the matching requests (faults added first apply first)."""
        with self._lock:
            self._faults.append(fault)

    def __enter__(self) -> HubDouble:
        self._serving.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._serving.stop()

    # -- used by the handler ------------------------------------------------------------

    def _fault_for(self, method: str, path: str) -> HubFault | None:
        with self._lock:
            self.requests.append((method, path))
            for fault in self._faults:
                if fault.matches(method, path) and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _answer(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for a request the faults let through."""
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            return self._api(repo="/".join(parts[2:4]), kind=parts[4], rest=parts[6:])
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(method, repo="/".join(parts[:2]), name="/".join(parts[4:]))
        return 404, {}, b""

    def _api(self, *, repo: str, kind: str, rest: list[str]) -> tuple[int, dict[str, str], bytes]:
        """``/api/models/{repo}/revision/{revision}`` and ``/api/models/{repo}/tree/{revision}``."""
        if (refused := self._refused(repo)) is not None:
            return refused
        files = self.repos[repo]
        if kind == "revision":
            return _json({"id": repo, "sha": _COMMIT, "siblings": [{"rfilename": name} for name in files]})
        if kind == "tree" and not rest:
            tree = [
                {"type": "file", "path": name, "size": len(data), "oid": _git_oid(data)}
                for name, data in files.items()
            ]
            return _json(tree)
        return 404, {}, b""

    def _resolve(self, method: str, *, repo: str, name: str) -> tuple[int, dict[str, str], bytes]:
        """``/{repo}/resolve/{revision}/{name}``: the file, with the headers huggingface_hub checks."""
        if (refused := self._refused(repo)) is not None:
            return refused
        if name not in self.repos[repo]:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": _COMMIT}, b""
        data = self.repos[repo][name]
        headers = {
            "X-Repo-Commit": _COMMIT,
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Content-Length": str(len(data)),
            "Content-Type": "application/octet-stream",
        }
        return 200, headers, b"" if method == "HEAD" else data

    def _refused(self, repo: str) -> tuple[int, dict[str, str], bytes] | None:
        if repo in self.gated:
            return 403, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access is restricted"}, b""
        if repo not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, b""
        return None


def _git_oid(data: bytes) -> str:
    """A file's git blob id, as the Hub's tree lists it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _json(value: Any) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(value).encode()


def _handler(hub: HubDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _serve(self, method: str) -> None:
            path = urlsplit(self.path).path
            fault = hub._fault_for(method, path)
            if fault is not None and fault.status == DROP:
                self.close_connection = True
                return
            if fault is not None:
                status, headers, body = fault.status, {"Content-Length": "0", **fault.headers}, b""
            else:
                status, headers, body = hub._answer(method, path)
                headers.setdefault("Content-Length", str(len(body)))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if method != "HEAD" and body:
                self.wfile.write(body)

    return Handler
