"""Backoff between retries of an orchestrator call: exponential, jittered, capped, interruptible.

The waits come from tenacity; the only thing added here is the choice of curve and a sleep that
a stop event cuts short, so that a worker asked to shut down never sits out a 30 s backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import attrs
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_never,
)
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

from fastwan_adapters.orchestrator.errors import (
    DeliveryInterrupted,
    OrchestratorAuthError,
    OrchestratorError,
    RequestNotBuilt,
)

__all__ = ["Backoff", "Sleep", "StopSignal", "pause_for", "retrying"]

log = logging.getLogger("fastwan_adapters.orchestrator.client")

#: Sleeps for the given seconds; tests pass one that records the waits and returns at once.
Sleep = Callable[[float], None]


class StopSignal(Protocol):
    """What interrupts a backoff (``threading.Event`` satisfies it)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"Backoff.{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class Backoff:
    """Exponential backoff with "equal jitter": the wait before retry ``n`` (1-based) is drawn
    uniformly from ``[w / 2, w]`` where ``w = min(cap, initial * 2 ** (n - 1))``.

    Half fixed and half random because full jitter can draw waits near zero (a tight loop
    against an orchestrator that is down) and no jitter makes every worker of a fleet retry in
    the same second after an outage.

    Attributes:
        initial: the largest first wait, seconds.
        cap: no wait is longer, seconds (the contract's 30 s).
    """

    initial: float = attrs.field(default=1.0, validator=_positive)
    cap: float = attrs.field(default=30.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.cap < self.initial:
            raise ValueError(f"Backoff.cap must be at least initial ({self.initial}), got {self.cap}")

    def wait_strategy(self) -> wait_base:
        """The tenacity ``wait=`` for this curve: a fixed half plus a random half."""
        half_initial, half_cap = self.initial / 2, self.cap / 2
        fixed = wait_exponential(multiplier=half_initial, max=half_cap)
        random_half = wait_random_exponential(multiplier=half_initial, max=half_cap)
        return fixed + random_half

    def bounds(self, retry: int) -> tuple[float, float]:
        """The least and the greatest wait before retry ``retry`` (1-based)."""
        if retry < 1:
            raise ValueError(f"retry must be at least 1, got {retry}")
        exponent = min(retry - 1, 64)  # 2**64 * initial is past any cap; avoids huge floats
        high = min(self.cap, self.initial * 2.0**exponent)
        return high / 2, high


def pause_for(path: str, stop: StopSignal | None, sleep: Sleep | None) -> Sleep:
    """A tenacity ``sleep=`` that raises :class:`DeliveryInterrupted` once ``stop`` is set.

    With no ``sleep`` the wait is ``stop.wait`` (returns as soon as it is set); a given ``sleep``
    (a test's fake clock) is called instead and ``stop`` is checked after it.
    """

    def pause(seconds: float) -> None:
        if sleep is not None:
            sleep(seconds)
            interrupted = stop is not None and stop.is_set()
        elif stop is not None:
            interrupted = stop.wait(seconds)
        else:
            time.sleep(seconds)
            interrupted = False
        if interrupted:
            raise DeliveryInterrupted(f"stopped while waiting to retry POST {path}", path=path)

    return pause


def retrying(
    path: str, backoff: Backoff, *, stop: StopSignal | None, sleep: Sleep | None, max_attempts: int | None
) -> Retrying:
    """The contract's retry of one call: every ``OrchestratorError`` but a stop or a request
    that cannot be built, with ``backoff``
    between tries, until ``max_attempts`` (``None``: without end) or ``stop``."""
    return Retrying(
        sleep=pause_for(path, stop, sleep),
        wait=backoff.wait_strategy(),
        retry=retry_if_exception_type(OrchestratorError)
        & retry_if_not_exception_type((DeliveryInterrupted, RequestNotBuilt)),
        stop=stop_never if max_attempts is None else stop_after_attempt(max_attempts),
        before_sleep=_log_retry,
        reraise=True,
    )


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    if isinstance(error, OrchestratorAuthError):
        log.debug("%s; retry %d in %.1f s", error, state.attempt_number, wait)
    else:
        log.warning("%s; retry %d in %.1f s", error, state.attempt_number, wait)
