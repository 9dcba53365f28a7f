"""The core's ``ProgressReporter`` port over the orchestrator's progress endpoint.

``report`` is called from the job thread between denoising steps (and from the event loop), and
a stalled orchestrator can take a whole call deadline to answer; so ``report`` only queues the
update on the worker's event loop, and one task there sends the queue in order. While an update
waits, a newer ``running`` update of the same job and phase replaces it: a slow orchestrator
costs at most one waiting update per job and phase, sees every phase change, and gets the
freshest value when it answers again. Terminal updates are never replaced or dropped for a
newer one.

The reporter works on the loop it is opened on (``async with reporter``); leaving the block
sends what is still queued, for ``close_timeout_s`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from typing import Final, Protocol

import attrs

from fastwan_core import ProgressUpdate

__all__ = ["OrchestratorProgressReporter", "ProgressSender"]

log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING: Final = 100


class ProgressSender(Protocol):
    """What the reporter needs of the client (``OrchestratorClient`` satisfies it)."""

    async def post_progress(self, job_id: str, update: ProgressUpdate) -> bool: ...


@attrs.frozen
class _Pending:
    job_id: str
    update: ProgressUpdate


class OrchestratorProgressReporter:
    """Best-effort progress: one try per update, sent in order by a task of the event loop.

    Never raises and never blocks the caller for longer than it takes to queue an update.

    Args:
        client: sends one update, once, and never raises.
        max_pending: updates waiting beyond this are dropped (``running`` ones first).
        close_timeout_s: how long leaving the ``async with`` block may spend sending.
    """

    def __init__(
        self, client: ProgressSender, *, max_pending: int = DEFAULT_MAX_PENDING, close_timeout_s: float = 5.0
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self._client = client
        self._max_pending = max_pending
        self.close_timeout_s = close_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._waiting: deque[_Pending] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    async def __aenter__(self) -> OrchestratorProgressReporter:
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose(self.close_timeout_s)

    def report(self, job_id: str, update: ProgressUpdate) -> None:
        """Queue ``update`` (from any thread)."""
        loop = self._loop
        if loop is None or self._closed:
            log.debug("progress for job %s dropped: the reporter is not open", job_id)
            return
        try:
            if threading.get_ident() == self._loop_thread:
                self._enqueue(_Pending(job_id, update))
            else:
                loop.call_soon_threadsafe(self._enqueue, _Pending(job_id, update))
        except Exception:  # the port's promise: never raise into the job (a closed loop included)
            log.warning("progress for job %s dropped", job_id, exc_info=True)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued update has been tried; ``False`` if ``timeout`` ran out."""
        await asyncio.sleep(0)  # updates handed over from another thread just before
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float | None = 5.0) -> None:
        """Send what is queued (for up to ``timeout`` seconds), then stop sending."""
        drained = await self.flush(timeout)
        self._closed = True
        if not drained and self._waiting:
            log.warning("%d progress update(s) not sent at shutdown", len(self._waiting))
            self._waiting.clear()
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    # -- the queue and its sender ---------------------------------------------------------

    def _enqueue(self, item: _Pending) -> None:
        if self._closed:
            log.debug("progress for job %s dropped: the reporter is closed", item.job_id)
            return
        if not self._queue(item):
            return
        self._idle.clear()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_waiting())

    def _queue(self, item: _Pending) -> bool:
        if not item.update.is_terminal:
            for index, waiting in enumerate(self._waiting):
                if (
                    waiting.job_id == item.job_id
                    and not waiting.update.is_terminal
                    and waiting.update.phase == item.update.phase
                ):
                    self._waiting[index] = item  # the newer value replaces the one not yet sent
                    return True
        if len(self._waiting) >= self._max_pending:
            oldest_running = next((w for w in self._waiting if not w.update.is_terminal), None)
            if oldest_running is not None and item.update.is_terminal:
                self._waiting.remove(oldest_running)
            elif not item.update.is_terminal:
                log.debug("progress for job %s dropped: %d updates waiting", item.job_id, len(self._waiting))
                return False
        self._waiting.append(item)
        return True

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                item = self._waiting.popleft()
                try:
                    await self._client.post_progress(item.job_id, item.update)
                except Exception:  # post_progress promises not to raise; the sender goes on if it does
                    log.warning("progress for job %s not sent", item.job_id, exc_info=True)
        finally:
            self._idle.set()
