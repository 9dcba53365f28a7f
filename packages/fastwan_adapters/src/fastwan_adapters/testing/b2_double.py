"""B2 for tests that start worker processes: b2sdk's own ``RawSimulator`` behind B2's HTTP API.

In-process tests of the store hand ``B2ResultStore.connect`` a ``B2Api`` built on b2sdk's
``RawSimulator``, which checks what real B2 checks (keys and their capabilities, auth tokens,
SHA-1). A worker *process* builds its own ``B2Api``, talking HTTP to B2's realm; this double
gives it one to talk to. It serves the calls the worker makes (``b2_authorize_account``,
``b2_list_buckets``, ``b2_get_upload_url`` and the upload itself) by calling the same methods
of one ``RawSimulator`` (what b2sdk's HTTP layer would have sent the real service, decoded
again), and answers the simulator's errors with B2's status and code, so the worker's b2sdk
raises what it raises against B2. The worker's code is the production code, its store the
production store: only the realm's address differs.

That address is the one thing a process cannot be told by a setting: the store authorises
against b2sdk's ``production`` realm. :meth:`B2Double.process_env` gives a child process this
folder's ``sitecustomize`` (which points b2sdk's ``REALM_URLS["production"]`` at the double
when ``FASTWAN_TESTING_B2_REALM_URL`` is set, and does nothing otherwise) and the credentials;
no production module knows of it. In-process, :meth:`B2Double.realm` does the same.

Faults (``orchestrator_faults.Fault``: an HTTP status with B2's error body, a delay, a dropped
connection) can be put in front of the next N calls of one kind, or of every call for a while
(``outage``). ``objects`` reads what the bucket holds, for the test's checks.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import io
import json
import re
import socket
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import attrs
from b2sdk.v2 import REALM_URLS, B2Api, B2HttpApiConfig, InMemoryAccountInfo, InMemoryCache, RawSimulator
from b2sdk.v2.exception import B2Error, FileSha1Mismatch, InvalidAuthToken, Unauthorized

from fastwan_adapters.testing.orchestrator_faults import Fault
from fastwan_adapters.testing.serving import BackgroundServer

__all__ = ["REALM_ENV", "B2Call", "B2Double", "ProductionLikeSimulator"]

#: Read by this folder's ``sitecustomize`` in a child process: where the production realm is.
REALM_ENV: Final = "FASTWAN_TESTING_B2_REALM_URL"
_SITE_DIR: Final = Path(__file__).with_name("b2_site")
_API: Final = re.compile(r"/b2api/v\d+/(b2_[a-z_]+)")
_UPLOAD_PREFIX: Final = "/upload/"
_OUTAGE: Final = Fault.answer(503)
_B2_PHRASES: Final = {
    408: "request_timeout",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


class B2Call(enum.Enum):
    """The kinds of call a fault can be put in front of."""

    AUTHORIZE = "authorize"
    API = "api"  # b2_list_buckets, b2_get_upload_url, ...
    UPLOAD = "upload"


class ProductionLikeSimulator(RawSimulator):  # type: ignore[misc]  # b2sdk is untyped
    """The simulator with B2's real download host shape and part size.

    The stock simulator recommends 200-byte parts, which would send every test upload down the
    large-file path; real B2 recommends 100 MB, so a video of a few MB is one small upload.
    Shared with the in-process store tests (tests/adapters/test_b2_store.py).
    """

    MIN_PART_SIZE = 5_000_000
    DOWNLOAD_URL = "https://f005.backblazeb2.com"
    DOWNLOAD_URL_MATCHER = re.compile(
        RawSimulator.DOWNLOAD_URL_MATCHER.pattern.replace(RawSimulator.DOWNLOAD_URL, DOWNLOAD_URL, 1)
    )


@attrs.define
class _Armed:
    fault: Fault
    remaining: int


class B2Double:
    """B2 at ``url``, with one account and one public bucket; a context manager.

    Attributes:
        key_id, app_key: the account's master key (``B2_KEY_ID``, ``B2_APP_KEY``).
        bucket_name: ``B2_BUCKET_NAME``.
        uploads: ``(object name, answer status or None if dropped)`` of every upload, in order.
    """

    def __init__(self, bucket_name: str = "fastwan-test-outputs") -> None:
        self.api = B2Api(
            InMemoryAccountInfo(),
            InMemoryCache(),
            api_config=B2HttpApiConfig(_raw_api_class=ProductionLikeSimulator),
        )
        self._raw: Any = self.api.session.raw_api
        self.key_id, self.app_key = self._raw.create_account()
        self.api.authorize_account("production-simulated", self.key_id, self.app_key)
        self.bucket_name = bucket_name
        self.bucket = self.api.create_bucket(bucket_name, "allPublic")
        self.uploads: list[tuple[str, int | None]] = []
        self._lock = threading.RLock()  # the simulator is not thread-safe
        self._faults: dict[B2Call, deque[_Armed]] = {kind: deque() for kind in B2Call}
        self._outage: Fault | None = None
        self._closing = threading.Event()
        self._serving = BackgroundServer(ThreadingHTTPServer(("127.0.0.1", 0), _handler(self)), "b2-double")

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> B2Double:
        self._serving.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._closing.set()
        self._serving.stop()

    @property
    def url(self) -> str:
        return self._serving.url

    def process_env(self, prefix: str | None = None) -> dict[str, str]:
        """What a worker process needs to use this double as its B2: the credentials, and the
        ``sitecustomize`` that points its b2sdk's production realm here (PYTHONPATH)."""
        env = {
            "B2_KEY_ID": self.key_id,
            "B2_APP_KEY": self.app_key,
            "B2_BUCKET_NAME": self.bucket_name,
            "PYTHONPATH": str(_SITE_DIR),
            REALM_ENV: self.url,
        }
        if prefix is not None:
            env["B2_PREFIX"] = prefix
        return env

    @contextlib.contextmanager
    def realm(self) -> Iterator[None]:
        """In this process: b2sdk's production realm is this double while the block runs."""
        before = REALM_URLS["production"]
        REALM_URLS["production"] = self.url
        try:
            yield
        finally:
            REALM_URLS["production"] = before

    # -- faults -----------------------------------------------------------------------------

    def fail_next(self, call: B2Call, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` calls of that kind (faults queue up in order)."""
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._lock:
            self._faults[call].append(_Armed(fault, times))

    def outage(self, fault: Fault | None = _OUTAGE) -> None:
        """Apply ``fault`` to every call from now on (``None``: the outage ends)."""
        with self._lock:
            self._outage = fault

    def clear_faults(self) -> None:
        with self._lock:
            for armed in self._faults.values():
                armed.clear()
            self._outage = None

    # -- what the bucket holds --------------------------------------------------------------

    def objects(self) -> dict[str, bytes]:
        """Every object's latest version: name -> bytes."""
        with self._lock:
            names = [info.file_name for info, _ in self.bucket.ls(recursive=True, latest_only=True)]
            return {name: self._read(name) for name in names}

    def read(self, name: str) -> bytes | None:
        """The latest version of ``name``, or ``None`` if there is none."""
        with self._lock:
            try:
                return self._read(name)
            except B2Error:
                return None

    def _read(self, name: str) -> bytes:
        buffer = io.BytesIO()
        self.bucket.download_file_by_name(name).save(buffer)
        return buffer.getvalue()

    def object_name_of(self, url: str) -> str | None:
        """The object a download URL this double's account gave names, or ``None``."""
        prefix = f"{ProductionLikeSimulator.DOWNLOAD_URL}/file/{self.bucket_name}/"
        return unquote(url[len(prefix) :]) if url.startswith(prefix) else None

    # -- serving ----------------------------------------------------------------------------

    def _fault_for(self, call: B2Call) -> Fault | None:
        with self._lock:
            if self._outage is not None:
                return self._outage
            armed = self._faults[call]
            if not armed:
                return None
            first = armed[0]
            first.remaining -= 1
            if first.remaining == 0:
                armed.popleft()
            return first.fault

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        length = int(handler.headers.get("Content-Length") or 0)
        data = handler.rfile.read(length) if length > 0 else b""
        api = _API.fullmatch(path)
        if path.startswith(_UPLOAD_PREFIX):
            call = B2Call.UPLOAD
        elif api is not None and api.group(1) == "b2_authorize_account":
            call = B2Call.AUTHORIZE
        else:
            call = B2Call.API
        fault = self._fault_for(call)
        if fault is not None and fault.delay > 0 and self._closing.wait(fault.delay):
            fault = Fault.dropped()
        if fault is not None and fault.drop:
            self._note_upload(call, handler, None)
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.status is not None:
            status, body = fault.status, fault.body or _error(fault.status, _phrase(fault.status), "injected")
        else:
            status, body = self._answer(call, api.group(1) if api else "", path, handler, data)
        self._note_upload(call, handler, status)
        _send(handler, status, body)

    def _note_upload(self, call: B2Call, handler: BaseHTTPRequestHandler, status: int | None) -> None:
        if call is B2Call.UPLOAD:
            with self._lock:
                self.uploads.append((unquote(handler.headers.get("X-Bz-File-Name", "")), status))

    def _answer(
        self, call: B2Call, name: str, path: str, handler: BaseHTTPRequestHandler, data: bytes
    ) -> tuple[int, Any]:
        """The simulator's answer, or its error as B2 answers it."""
        try:
            with self._lock:
                answer = self._call(call, name, path, handler, data)
        except InvalidAuthToken as error:
            code = "expired_auth_token" if "expired" in str(error.code) else "bad_auth_token"
            return 401, _error(401, code, str(error))
        except Unauthorized as error:
            return 401, _error(401, "unauthorized", str(error))
        except FileSha1Mismatch:
            return 400, _error(400, "bad_request", "Checksum did not match data received")
        except B2Error as error:
            return 400, _error(400, "bad_request", type(error).__name__)
        if answer is None:
            return 404, _error(404, "not_found", f"{name or path} is not served by the B2 double")
        return 200, answer

    def _call(self, call: B2Call, name: str, path: str, handler: BaseHTTPRequestHandler, data: bytes) -> Any:
        auth = handler.headers.get("Authorization", "")
        if call is B2Call.UPLOAD:
            return self._upload(path, auth, handler, data)
        params = json.loads(data) if data else {}
        if name == "b2_authorize_account":
            return self._authorize(auth)
        if name == "b2_list_buckets":
            ids = (params.get("accountId"), params.get("bucketId"), params.get("bucketName"))
            return self._raw.list_buckets(ProductionLikeSimulator.API_URL, auth, *ids)
        if name == "b2_get_upload_url":
            answer = dict(
                self._raw.get_upload_url(ProductionLikeSimulator.API_URL, auth, params.get("bucketId"))
            )
            answer["uploadUrl"] = f"{self.url}{_UPLOAD_PREFIX}{quote(answer['uploadUrl'], safe='')}"
            return answer
        return None

    def _authorize(self, auth: str) -> dict[str, Any]:
        key_id, _, app_key = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        answer = self._raw.authorize_account(self.url, key_id, app_key)
        answer["apiInfo"]["storageApi"]["apiUrl"] = self.url
        return dict(answer)

    def _upload(self, path: str, auth: str, handler: BaseHTTPRequestHandler, data: bytes) -> Any:
        headers = handler.headers
        info = {
            key[len("X-Bz-Info-") :]: unquote(value)
            for key, value in headers.items()
            if key.lower().startswith("x-bz-info-")
        }
        upload_url = unquote(path[len(_UPLOAD_PREFIX) :])
        return self._raw.upload_file(
            upload_url,
            auth,
            unquote(headers.get("X-Bz-File-Name", "")),
            len(data),
            headers.get("Content-Type", "b2/x-auto"),
            headers.get("X-Bz-Content-Sha1", ""),
            info,
            io.BytesIO(data),
        )


def _phrase(status: int) -> str:
    return _B2_PHRASES.get(status, "bad_request" if status < 500 else "internal_error")


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    """B2's error body, which b2sdk turns back into its exceptions."""
    return {"status": status, "code": code, "message": message}


def _send(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    data = json.dumps(body, default=_as_json).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:  # the client gave up
        handler.close_connection = True


def _as_json(value: object) -> object:
    """What the simulator keeps as Python values that B2 sends as JSON (capability sets)."""
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _handler(double: B2Double) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            double._serve(self)

        do_GET = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler
