"""The signal handling: SIGTERM and SIGINT, received by the event loop, as "stop" and "stop now".

``loop.add_signal_handler`` runs the handler as an ordinary callback of the loop, never in the
middle of other code, so it may act on the worker directly. The previous handlers are put back
on exit, so tests and embedding programs get their own behaviour back.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["STOP_SIGNALS", "stop_signals"]

log = logging.getLogger("buffer_worker.supervisor")

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_signals(
    stop: Callable[[], None], stop_now: Callable[[], None], *, earlier: Iterable[int] = ()
) -> Iterator[None]:
    """Inside the block, the first of ``STOP_SIGNALS`` calls ``stop`` (claim nothing more, let
    the job in hand finish in its grace period) and any later one ``stop_now``. ``earlier``:
    the signals that came before the block (``__main__`` holds them from its first line), acted
    on as the block begins, in order.

    Must be entered on the main thread, in a coroutine of its running loop.
    """
    loop = asyncio.get_running_loop()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            log.info("%s: stopping", name)
            stop()
        else:
            log.warning("%s again: exiting now", name)
            stop_now()

    try:
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, on_signal, signum)
        for held in earlier:
            on_signal(held)
        yield
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, handler)
