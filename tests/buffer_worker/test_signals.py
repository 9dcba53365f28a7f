"""Signals: counted into "stop" and "stop now", and the old handlers put back."""

from __future__ import annotations

import os
import signal
import threading
import time

from buffer_worker.signals import ShutdownRequests, handle_signals


def wait_for(flag: threading.Event, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not flag.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_first_signal_asks_to_stop_the_second_to_stop_now() -> None:
    requests = ShutdownRequests()
    with handle_signals(requests):
        os.kill(os.getpid(), signal.SIGTERM)
        wait_for(requests.graceful)
        assert requests.graceful.is_set() and not requests.immediate.is_set()

        os.kill(os.getpid(), signal.SIGINT)
        wait_for(requests.immediate)

    assert requests.immediate.is_set()
    assert requests.last_signal == signal.SIGINT


def test_the_previous_handlers_are_restored_on_exit() -> None:
    def mine(_signum: int, _frame: object) -> None:
        return None

    before_int = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with handle_signals(ShutdownRequests()):
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is before_int
    finally:
        signal.signal(signal.SIGTERM, previous)
