"""One call with an overall deadline, abandoned when a stop comes: what httpx's timeouts are not.

httpx's read timeout bounds each read, not the answer: an orchestrator that drips one byte
every few seconds holds a call (and a worker asked to stop) for as long as it likes (httpx
issue #1450 is the known limit). So the call runs on a short-lived daemon thread and the caller
waits for it with a deadline and its stop signal; when either comes first the call is abandoned:
the caller goes on, and the thread ends on its own when httpx's per-read timeout or the answer
comes (it holds one pooled connection until then, and the process never waits for it at exit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from fastwan_adapters.orchestrator.backoff import StopSignal
from fastwan_adapters.threads import daemon_thread

__all__ = ["CallAbandoned", "DeadlinePassed", "StopCame", "call_within"]

_T = TypeVar("_T")
_SLICE_S: Final = 0.05  # how often a waiting caller looks at its stop signal


class CallAbandoned(Exception):
    """The call was left running on its thread; its answer, if one comes, is dropped."""


class DeadlinePassed(CallAbandoned):
    """No complete answer within the deadline."""


class StopCame(CallAbandoned):
    """The stop signal was set while the call ran."""


class _Call(Generic[_T]):
    def __init__(self, function: Callable[[], _T]) -> None:
        self._function = function
        self.done = threading.Event()
        self.value: _T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self._function()
        except BaseException as error:  # handed to the caller, who re-raises it
            self.error = error
        finally:
            self.done.set()


def call_within(function: Callable[[], _T], *, deadline_s: float, stop: StopSignal | None = None) -> _T:
    """``function()``'s result (or its exception), if it comes within ``deadline_s``.

    A ``stop`` already set when the call starts does not abandon it: that is the caller's
    deliberate last try (a second signal's one attempt), still bounded by the deadline.

    Raises:
        DeadlinePassed: no result within ``deadline_s``.
        StopCame: ``stop`` was set while the call ran.
    """
    call: _Call[_T] = _Call(function)
    daemon_thread(call.run, name="orchestrator-call").start()  # the job id travels with it
    watch = stop if stop is not None and not stop.is_set() else None
    deadline = time.monotonic() + deadline_s
    while not call.done.wait(max(0.0, min(_SLICE_S, deadline - time.monotonic()))):
        if watch is not None and watch.is_set():
            raise StopCame("stopped during the call")
        if time.monotonic() >= deadline:
            raise DeadlinePassed(f"no complete answer within {deadline_s:g} s")
    if call.error is not None:
        raise call.error
    return call.value  # type: ignore[return-value]  # set whenever error is not
