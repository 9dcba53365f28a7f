"""The job thread: where the GPU work of both workers runs, one call at a time, off the event loop.
(And the one way this code base runs a blocking call on a thread of its own: a model
download's attempt that its caller may give up on, ``generator.hub_retry``, has a runner too.)

Both workers are asyncio programs. What holds the GPU for seconds to minutes (the model's load,
each job) runs here, so that a heartbeat or a health probe never waits for it, and one call at
a time, so that two jobs never share the GPU. A call cannot be stopped from outside (nothing can
stop a thread): a job is asked to, through the core's cancellation signal, and its caller may
stop waiting for it. The thread is a daemon, so the process never waits for it at exit: a worker
told to exit cannot hang on a CUDA call that never returns.

Each call runs in a copy of its caller's context, so a job's lines carry its id
(``fastwan_adapters.logs.bind_job``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["JobRunner"]

_T = TypeVar("_T")
_Work = tuple["concurrent.futures.Future[Any]", contextvars.Context, Callable[[], Any]] | None


class JobRunner:
    """Runs calls on the one job thread, in order; started on the first call, ended by
    :meth:`close` once the calls before it are done."""

    def __init__(self, name: str = "job") -> None:
        self._name = name
        self._waiting: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._closed = False

    @property
    def busy(self) -> bool:
        """A call is running on the thread now (a process exiting must not wait for it)."""
        return self._busy

    async def run(self, call: Callable[[], _T]) -> _T:
        """``call()``'s result, computed on the job thread. Cancelling the caller does not stop
        ``call`` once it runs: it goes on, and its result is dropped."""
        return await asyncio.wrap_future(self.submit(call))

    def submit(self, call: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        """``call()`` queued for the thread, from any thread; its future, for a caller with no
        event loop (who may stop waiting for it: ``future.result(timeout)``)."""
        if self._closed:
            raise RuntimeError("the job thread is closed")
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._waiting.put((future, contextvars.copy_context(), call))
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        return future

    def close(self) -> None:
        """No more calls: the thread ends once it is done with those it has."""
        self._closed = True
        self._waiting.put(None)

    def _serve(self) -> None:
        while (work := self._waiting.get()) is not None:
            future, context, call = work
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up before it started
            self._busy = True
            try:
                result = context.run(call)
            except BaseException as error:  # handed to the awaiting coroutine
                self._busy = False
                future.set_exception(error)
            else:
                self._busy = False  # before the caller hears of it
                future.set_result(result)
