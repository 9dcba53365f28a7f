"""SIGTERM and SIGINT, turned into two flags the supervisor reads: "stop" and "stop now".

A Python signal handler runs on the main thread between two bytecodes, possibly while that
thread holds a lock; so the handler here only sets events that the main thread never waits on
(it polls them), and everything else happens outside the handler. The previous handlers are put
back on exit, so tests and embedding programs get their own behaviour back.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Final

__all__ = ["STOP_SIGNALS", "ShutdownRequests", "handle_signals"]

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


class ShutdownRequests:
    """Counts stop signals: the first asks for a graceful stop, the second for an immediate one.

    Attributes:
        graceful: set by the first signal.
        immediate: set by the second.
    """

    def __init__(self) -> None:
        self.graceful = threading.Event()
        self.immediate = threading.Event()
        self.last_signal: int | None = None

    def on_signal(self, signum: int, _frame: FrameType | None = None) -> None:
        self.last_signal = signum
        if self.graceful.is_set():
            self.immediate.set()
        else:
            self.graceful.set()


@contextmanager
def handle_signals(requests: ShutdownRequests, signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
    """Route ``signals`` to ``requests`` inside the block; restore the previous handlers after.

    Must be entered on the main thread (only it may install signal handlers).
    """
    previous = {signum: signal.getsignal(signum) for signum in signals}
    try:
        for signum in signals:
            signal.signal(signum, requests.on_signal)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
