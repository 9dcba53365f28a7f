"""The main thread's part: receive signals, watch the claim loop, and say how to exit.

The claim loop runs on its own thread so that the main thread is free for what only it can
do, run signal handlers, and so that a second signal is acted on at once even while the claim
loop sits in a long call.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Final

from buffer_worker.signals import ShutdownRequests
from buffer_worker.worker import BufferWorker
from fastwan_adapters.exit_code import ExitCode

__all__ = ["supervise"]

log = logging.getLogger(__name__)

_POLL_S: Final = 0.1


def supervise(worker: BufferWorker, requests: ShutdownRequests) -> ExitCode:
    """Run ``worker`` on a thread until it ends; the first signal in ``requests`` asks it to
    stop, the second makes it report and return at once. Call with the handlers installed."""
    loop = threading.Thread(target=worker.run, name="claim-loop", daemon=True)
    loop.start()
    asked = False
    while loop.is_alive():
        loop.join(_POLL_S)
        if requests.immediate.is_set():
            log.warning("%s again: exiting now", _name(requests.last_signal))
            return worker.abort()
        if requests.graceful.is_set() and not asked:
            asked = True
            log.info("%s: stopping", _name(requests.last_signal))
            worker.request_stop()
    return worker.exit_code if worker.exit_code is not None else ExitCode.RESTART


def _name(signum: int | None) -> str:
    if signum is None:
        return "signal"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
