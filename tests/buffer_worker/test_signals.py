"""The signal handling: SIGTERM/SIGINT received by the event loop as "stop", then "stop now", and
the old handlers put back."""

from __future__ import annotations

import asyncio
import os
import signal

from buffer_worker.signals import stop_signals


def test_the_first_signal_asks_to_stop_the_second_to_stop_now() -> None:
    calls: list[str] = []

    async def main() -> None:
        with stop_signals(lambda: calls.append("stop"), lambda: calls.append("stop now")):
            os.kill(os.getpid(), signal.SIGTERM)
            while not calls:
                await asyncio.sleep(0.01)
            assert calls == ["stop"]
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            while len(calls) < 3:
                await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(main(), 5))

    assert calls == ["stop", "stop now", "stop now"]


def test_the_previous_handlers_are_restored_on_exit() -> None:
    def mine(_signum: int, _frame: object) -> None:
        return None

    before_int = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, mine)

    async def main() -> None:
        with stop_signals(lambda: None, lambda: None):
            assert signal.getsignal(signal.SIGTERM) is not mine

    try:
        asyncio.run(main())
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is before_int
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_signals_that_came_before_the_block_are_acted_on_as_it_begins_in_order() -> None:
    calls: list[str] = []

    async def main() -> None:
        with stop_signals(
            lambda: calls.append("stop"), lambda: calls.append("stop now"), earlier=[signal.SIGTERM]
        ):
            assert calls == ["stop"]
            os.kill(os.getpid(), signal.SIGTERM)
            while len(calls) < 2:
                await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(main(), 5))

    assert calls == ["stop", "stop now"]
