"""One POST to the orchestrator: its path built safely, sent within the overall deadline.

Every way of getting no answer becomes one of the contract's errors here, so that the client's
calls only decide what each answer means and whether to retry: a request that cannot be built
(``RequestNotBuilt``, never retried), no complete answer in time, a refused or dropped
connection (``OrchestratorUnavailable``), or the caller's stop (``DeliveryInterrupted``).
The overall deadline is ``fastwan_adapters.deadline.within``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx

from fastwan_adapters.deadline import DeadlinePassed, StopCame, within
from fastwan_adapters.orchestrator.errors import DeliveryInterrupted, OrchestratorUnavailable, RequestNotBuilt

__all__ = ["post", "segment"]

_MAX_REASON_CHARS: Final = 200


def segment(value: str, name: str) -> str:
    """One path segment: ids are quoted so that none can change the path it is put in."""
    if not value:
        raise ValueError(f"{name} must not be empty")
    return quote(value, safe="")


async def post(
    http: httpx.AsyncClient,
    path: str,
    body: Mapping[str, Any],
    *,
    deadline_s: float,
    stop: asyncio.Event | None = None,
) -> httpx.Response:
    """POST ``body`` to ``path`` and return the answer, whatever its status (the caller checks it).

    Raises:
        RequestNotBuilt: the path or the body cannot make a request.
        OrchestratorUnavailable: no complete answer within ``deadline_s``, a timeout, or no answer.
        DeliveryInterrupted: ``stop`` was set during the call.
    """
    try:
        request = http.build_request("POST", path, json=body)
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        shown = path if len(path) <= _MAX_REASON_CHARS else f"{path[:_MAX_REASON_CHARS]}..."
        raise RequestNotBuilt(
            f"POST {shown}: the request cannot be built ({type(error).__name__}: "
            f"{str(error)[:_MAX_REASON_CHARS]})",
            path=path,
        ) from None
    try:
        return await within(http.send(request), deadline_s=deadline_s, stop=stop)
    except DeadlinePassed:
        raise OrchestratorUnavailable(
            f"POST {path}: no complete answer within {deadline_s:g} s (ORCHESTRATOR_CALL_DEADLINE_S)",
            path=path,
        ) from None
    except StopCame:
        raise DeliveryInterrupted(f"POST {path}: abandoned, the worker is stopping", path=path) from None
    except httpx.TimeoutException as error:
        raise OrchestratorUnavailable(f"POST {path}: timed out ({type(error).__name__})", path=path) from None
    except httpx.TransportError as error:
        reason = str(error)[:_MAX_REASON_CHARS] or type(error).__name__
        raise OrchestratorUnavailable(f"POST {path}: no answer ({reason})", path=path) from None
