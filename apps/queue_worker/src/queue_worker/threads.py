"""Running blocking work off the event loop, in a daemon thread the process never waits for.

Generation and model loading hold a thread for seconds to minutes. Neither may run on the
event loop (``/health`` must answer within 100 ms) nor in a pool thread the interpreter joins at
exit: a worker told to exit (SIGTERM past its grace, a fatal error) must not hang on a CUDA call
that never returns. So each runs in a fresh daemon thread, with the caller's context variables
(the job id on every log line): :func:`fastwan_adapters.threads.daemon_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import TypeVar

from fastwan_adapters.threads import daemon_thread

__all__ = ["run_in_daemon_thread"]

_T = TypeVar("_T")


def run_in_daemon_thread(fn: Callable[[], _T], *, name: str) -> asyncio.Future[_T]:
    """Run ``fn`` in a new daemon thread; the future completes on the calling loop.

    Cancelling the future does not stop ``fn`` (nothing can stop a thread): stop it through its
    own signal, and use the future's callbacks to learn when it really ended.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(value: object = None, error: BaseException | None = None) -> None:
        if future.done():  # cancelled by its caller meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    def target() -> None:
        try:
            value = fn()
        except BaseException as error:  # handed to the awaiting coroutine, which logs it
            outcome = functools.partial(settle, error=error)
        else:
            outcome = functools.partial(settle, value)
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody is waiting
            loop.call_soon_threadsafe(outcome)

    daemon_thread(target, name=name).start()
    return future
