"""The one retry rule of every orchestrator call: exponential backoff, jittered, capped, and cut
short by a stop.

A worker asked to shut down never sits out a 30 s backoff: every wait is a ``pause`` on the
caller's stop event. The same curve paces a single call's retries (``RetryPolicy.call``) and the
rounds in which the statuses left from the last run are sent (``buffer_worker.leftovers``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs

from fastwan_adapters.deadline import pause
from fastwan_adapters.orchestrator.errors import (
    DeliveryInterrupted,
    OrchestratorAuthError,
    OrchestratorError,
    RequestNotBuilt,
)

__all__ = ["RetryPolicy", "Sleep"]

log = logging.getLogger("fastwan_adapters.orchestrator.client")

#: Spends a backoff wait; tests pass one that records the waits and returns at once.
Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with "equal jitter": the wait before retry ``n`` (1-based) is drawn
    uniformly from ``[w / 2, w]`` where ``w = min(cap, initial * 2 ** (n - 1))``.

    Half fixed and half random because full jitter can draw waits near zero (a tight loop
    against an orchestrator that is down) and no jitter makes every worker of a fleet retry in
    the same second after an outage.

    Attributes:
        initial: the largest first wait, seconds (``ORCHESTRATOR_RETRY_INITIAL_S``).
        cap: no wait is longer, seconds (the contract's 30 s).
        sleep: how a wait is spent; ``None``: really wait, cut short by the caller's stop.
    """

    initial: float = attrs.field(default=1.0, validator=_positive)
    cap: float = attrs.field(default=30.0, validator=_positive)
    sleep: Sleep | None = attrs.field(default=None, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.cap < self.initial:
            raise ValueError(f"RetryPolicy.cap must be at least initial ({self.initial}), got {self.cap}")

    def bounds(self, retry: int) -> tuple[float, float]:
        """The least and the greatest wait before retry ``retry`` (1-based)."""
        if retry < 1:
            raise ValueError(f"retry must be at least 1, got {retry}")
        exponent = min(retry - 1, 64)  # 2**64 * initial is past any cap; avoids huge floats
        high = min(self.cap, self.initial * 2.0**exponent)
        return high / 2, high

    def wait(self, retry: int) -> float:
        """A wait before retry ``retry``, drawn from its band."""
        return random.uniform(*self.bounds(retry))  # noqa: S311 - jitter, not security

    async def pause(self, seconds: float, stop: asyncio.Event | None, path: str) -> None:
        """Spend a wait of ``seconds`` before retrying ``path``.

        Raises:
            DeliveryInterrupted: ``stop`` was set before or during the wait.
        """
        if self.sleep is not None:
            await self.sleep(seconds)
            interrupted = stop is not None and stop.is_set()
        else:
            interrupted = await pause(stop, seconds)
        if interrupted:
            raise DeliveryInterrupted(f"stopped while waiting to retry POST {path}", path=path)

    async def call(
        self,
        path: str,
        attempt: Callable[[], Awaitable[_T]],
        *,
        stop: asyncio.Event | None,
        max_attempts: int | None,
    ) -> _T:
        """``attempt()``, retried on every ``OrchestratorError`` but a stop or a request that
        cannot be built, until it succeeds, ``max_attempts`` tries failed (the last failure is
        raised) or ``stop`` ends a wait (``DeliveryInterrupted``)."""
        for number in itertools.count(1):
            try:
                return await attempt()
            except (DeliveryInterrupted, RequestNotBuilt):
                raise
            except OrchestratorError as error:
                if max_attempts is not None and number >= max_attempts:
                    raise
                wait = self.wait(number)
                level = logging.DEBUG if isinstance(error, OrchestratorAuthError) else logging.WARNING
                log.log(level, "%s; retry %d in %.1f s", error, number, wait)
                await self.pause(wait, stop, path)
        raise AssertionError("unreachable")  # pragma: no cover - itertools.count never ends
