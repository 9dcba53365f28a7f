"""huggingface_hub's HTTP client, watched: each request of a download is seen by that download.

A download cannot be bounded or stopped from outside the call that makes it: huggingface_hub
retries inside the call (HTTP 5xx and 429, dropped connections and timeouts, up to five times
with waits of its own, ``Retry-After`` honoured) and sends some requests (the repository's
information) with no timeout at all, so a Hub that accepts the connection and never answers
holds the call forever. So the client huggingface_hub uses is replaced, once per process,
through its documented hook (``set_client_factory``) by one that:

- caps every request's connect and read timeouts at ``HF_HUB_DOWNLOAD_TIMEOUT``
  (huggingface_hub's own setting, 10 s by default), including the requests it leaves unbounded:
  a Hub that does not answer is a failure like any other;
- tells the download a request belongs to (:class:`DownloadWatch`, named by a header that
  ``watched_download`` gives the call and that is taken off before the request is sent) about
  every failed request or transfer, huggingface_hub's own retries included;
- refuses the requests, and stops the transfers, of a download that has ended
  (:class:`DownloadAbandoned`): a download given up on does not go on in the background.

Requests without the header (none of ours) pass untouched. huggingface_hub's telemetry is also
turned off here: with it, the first request of a process not offline also asks the Hub for its
list of AI-agent harnesses (``/api/agent-harnesses``, to name one in the user agent), a call
the worker has no use for.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import attrs
from huggingface_hub import constants, get_session, set_client_factory

# huggingface_hub's own HTTP module (httpx2 from its 2.0 on, httpx in 1.x): its documented way
# to reach the client's types whichever it is; not re-exported for type checkers.
from huggingface_hub.utils import httpx  # type: ignore[attr-defined]

__all__ = ["DownloadAbandoned", "DownloadWatch", "watched_download"]

_TAG: Final = "X-Fastwan-Download"
_PASSING_STATUS: Final = frozenset({408, 429})

_live: dict[str, DownloadWatch] = {}
_live_lock = threading.Lock()
_install_lock = threading.Lock()


class DownloadAbandoned(Exception):
    """A request or transfer of a download that has already ended (given up on, or stopped).

    Not an HTTP error, so that huggingface_hub does not retry it."""


@attrs.define
class DownloadWatch:
    """What one download's requests did, as the watched client saw them.

    Attributes:
        first_failure: ``time.monotonic()`` of the first failed request (an HTTP 5xx, 408 or
            429, a connection error, a timeout), huggingface_hub's own retries included.
        last_failure: the same, of the last one.
        reason: why the last failed request failed, completing "could not be downloaded: ...".
        ended: set when the download is over; its requests are refused from then on.
    """

    first_failure: float | None = None
    last_failure: float | None = None
    reason: str | None = None
    ended: bool = False
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def failed(self, reason: str) -> None:
        with self._lock:
            self.last_failure = time.monotonic()
            if self.first_failure is None:
                self.first_failure = self.last_failure
            self.reason = reason

    def failing_for(self) -> float:
        """Seconds since the first failed request; 0 while none has failed."""
        return 0.0 if self.first_failure is None else time.monotonic() - self.first_failure

    def failed_since(self, moment: float) -> bool:
        """A request failed at or after ``moment`` (a ``time.monotonic()``)."""
        return self.last_failure is not None and self.last_failure >= moment


@contextmanager
def watched_download() -> Iterator[tuple[DownloadWatch, dict[str, str]]]:
    """A watch for one download, and the headers its huggingface_hub calls must be given."""
    with _install_lock:
        _install()
    tag, watch = uuid.uuid4().hex, DownloadWatch()
    with _live_lock:
        _live[tag] = watch
    try:
        yield watch, {_TAG: tag}
    finally:
        watch.ended = True
        with _live_lock:
            del _live[tag]


@functools.cache
def _install() -> None:
    """Once per process: huggingface_hub's client watched, its telemetry off."""
    constants.HF_HUB_DISABLE_TELEMETRY = True
    # The hooks huggingface_hub's own client carries (offline mode, request ids) are kept.
    hooks = get_session().event_hooks
    set_client_factory(lambda: _WatchedClient(event_hooks=hooks, follow_redirects=True, timeout=None))


def _timeout_s() -> float:
    return float(constants.HF_HUB_DOWNLOAD_TIMEOUT)


class _WatchedClient(httpx.Client):
    def send(self, request: Any, **kwargs: Any) -> Any:
        tag = request.headers.pop(_TAG, None)
        if tag is None:
            return super().send(request, **kwargs)
        with _live_lock:
            watch = _live.get(tag)
        if watch is None:
            raise DownloadAbandoned(f"{request.method} {request.url}: the download has ended")
        _cap_timeouts(request, _timeout_s())
        try:
            response = super().send(request, **kwargs)
        except httpx.TimeoutException:
            watch.failed(f"the Hub did not answer within {_timeout_s():g} s (HF_HUB_DOWNLOAD_TIMEOUT)")
            raise
        except httpx.TransportError as error:
            watch.failed(f"the connection to the Hub failed ({type(error).__name__})")
            raise
        status = response.status_code
        if status >= 500 or status in _PASSING_STATUS:
            watch.failed(f"the Hub answered HTTP {status}")
        elif not response.is_stream_consumed:
            response.stream = _WatchedStream(response.stream, watch)
        return response


def _cap_timeouts(request: Any, cap_s: float) -> None:
    timeouts = dict(request.extensions.get("timeout") or {})
    for kind in ("connect", "read"):
        given = timeouts.get(kind)
        timeouts[kind] = cap_s if given is None else min(float(given), cap_s)
    request.extensions["timeout"] = timeouts


class _WatchedStream(httpx.SyncByteStream):
    """A response body being received: its failures told, cut off once its download ended."""

    def __init__(self, stream: Any, watch: DownloadWatch) -> None:
        self._stream, self._watch = stream, watch

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._stream:
                if self._watch.ended:
                    raise DownloadAbandoned("the download has ended")
                yield chunk
        except httpx.TimeoutException:
            self._watch.failed(f"the Hub stopped sending for {_timeout_s():g} s (HF_HUB_DOWNLOAD_TIMEOUT)")
            raise
        except httpx.TransportError as error:
            self._watch.failed(f"the transfer from the Hub broke off ({type(error).__name__})")
            raise

    def close(self) -> None:
        self._stream.close()
