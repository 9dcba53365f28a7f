"""What a test arranges and reads on the orchestrator double: its endpoints, the faults it can be
told to answer with, a standing refusal, the requests it records, and a recording sleep."""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote

import attrs

__all__ = ["Endpoint", "Fault", "RecordedRequest", "RecordingSleep", "Refusal", "route"]


class Endpoint(enum.Enum):
    CLAIM = "claim"
    HEARTBEAT = "heartbeat"
    STATUS = "status"
    PROGRESS = "progress"


_ROUTES: Final = (
    (re.compile(r"/internal/buffer/jobs/claim"), Endpoint.CLAIM),
    (re.compile(r"/internal/buffer/workers/([^/]+)/heartbeat"), Endpoint.HEARTBEAT),
    (re.compile(r"/internal/buffer/jobs/([^/]+)/status"), Endpoint.STATUS),
    (re.compile(r"/internal/videogen/jobs/([^/]+)/progress"), Endpoint.PROGRESS),
)


@attrs.frozen
class Fault:
    """What the double does instead of answering normally.

    Attributes:
        status: answer with this HTTP status (and ``body``) instead of handling the call.
        delay: wait this long first (then answer ``status``, drop, or handle normally).
        drop: close the connection without answering.
        drip: write the whole answer (status line, headers, body) one byte at a time, this many
            seconds apart: a slow-loris orchestrator that no per-read timeout catches.
    """

    status: int | None = None
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    drip: float = 0.0

    @classmethod
    def answer(cls, status: int, body: Any = None) -> Fault:
        return cls(status=status, body=body)

    @classmethod
    def delayed(cls, seconds: float) -> Fault:
        return cls(delay=seconds)

    @classmethod
    def dropped(cls) -> Fault:
        return cls(drop=True)

    @classmethod
    def dripped(cls, seconds_per_byte: float) -> Fault:
        return cls(drip=seconds_per_byte)


@attrs.frozen
class Refusal:
    """A standing answer ``code`` to the status calls of one job (``ident``), of one status
    value (``status``), or of both (``OrchestratorDouble.refuse``)."""

    code: int
    ident: str | None
    status: str | None

    def matches(self, request: RecordedRequest) -> bool:
        body = request.body if isinstance(request.body, dict) else {}
        return (self.ident is None or request.ident == self.ident) and (
            self.status is None or body.get("status") == self.status
        )


@attrs.frozen
class RecordedRequest:
    """One request as the double received it.

    Attributes:
        endpoint: ``None`` for a path that is not the contract's.
        ident: the id in the path (worker id, buffer job id or job id), unquoted.
        headers: names lower-cased.
        body: the parsed JSON, or ``None`` (no body or not JSON).
        at: ``time.monotonic()`` on arrival.
        answer: the HTTP status sent; ``None`` if the connection was dropped (or not yet answered).
    """

    method: str
    path: str
    endpoint: Endpoint | None
    ident: str | None
    headers: Mapping[str, str]
    body: Any
    at: float
    answer: int | None = None

    @property
    def answered_ok(self) -> bool:
        return self.answer is not None and 200 <= self.answer < 300


@attrs.define(kw_only=True)
class RecordingSleep:
    """A ``RetryPolicy.sleep`` that returns at once and records each wait.

    Attributes:
        stop, stop_after: set ``stop`` once ``stop_after`` waits were asked (to test shutdown).
    """

    waits: list[float] = attrs.field(factory=list)
    stop: asyncio.Event | None = None
    stop_after: int | None = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.stop is not None and self.stop_after is not None and len(self.waits) >= self.stop_after:
            self.stop.set()


def route(path: str) -> tuple[Endpoint | None, str | None]:
    for pattern, endpoint in _ROUTES:
        if (match := pattern.fullmatch(path)) is not None:
            return endpoint, unquote(match.group(1)) if match.groups() else None
    return None, None
