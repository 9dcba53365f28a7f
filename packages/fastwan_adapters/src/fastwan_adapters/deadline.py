"""How coroutines wait on the event loop: for an answer within one overall deadline, abandoned
when a stop comes; for a pause that a stop cuts short; for the first of several things.

httpx's timeouts bound each connect, read and write, not the answer: a server that drips one
byte every few seconds holds a call for as long as it likes (httpx issue #1450 is the known
limit). ``asyncio.timeout`` bounds the whole exchange instead, connection, redirects and body
included; an abandoned call is cancelled, and httpx closes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["DeadlinePassed", "StopCame", "first_of", "pause", "within"]

_T = TypeVar("_T")


class DeadlinePassed(Exception):
    """No complete answer within the deadline; the call was cancelled."""


class StopCame(Exception):
    """The stop was set while the call ran; the call was cancelled."""


async def within(awaitable: Awaitable[_T], *, deadline_s: float, stop: asyncio.Event | None = None) -> _T:
    """``awaitable``'s result (or its exception), if it comes within ``deadline_s``.

    A ``stop`` already set when the call starts does not abandon it: that is the caller's
    deliberate last try (a second signal's one attempt), still bounded by the deadline.

    Raises:
        DeadlinePassed: no result within ``deadline_s``.
        StopCame: ``stop`` was set while the call ran.
    """
    try:
        async with asyncio.timeout(deadline_s):
            if stop is None or stop.is_set():
                return await awaitable
            call, watch = asyncio.ensure_future(awaitable), asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({call, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                answered = call.done()
                watch.cancel()
                call.cancel()  # no-op when answered
            if not answered:
                raise StopCame("stopped during the call")
            return call.result()
    except TimeoutError:
        raise DeadlinePassed(f"no complete answer within {deadline_s:g} s") from None


async def pause(stop: asyncio.Event | None, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``stop`` is set; ``True`` if it was."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await stop.wait()
    return stop.is_set()


async def first_of(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of ``awaitables`` is done. The coroutines among them are then
    cancelled; a future given is only no longer waited for."""
    waits = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for awaitable, wait in zip(awaitables, waits, strict=True):
            if wait is not awaitable:  # made here
                wait.cancel()
