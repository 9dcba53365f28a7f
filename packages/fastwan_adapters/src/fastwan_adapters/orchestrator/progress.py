"""The core's ``ProgressReporter`` port over the orchestrator's progress endpoint.

``report`` is called from the generation thread between denoising steps, and a stalled
orchestrator can take a full read timeout (10 s) to answer; so updates are handed to one
background sender thread and ``report`` returns at once. While an update waits, a newer
``running`` update of the same job and phase replaces it: a slow orchestrator costs at most one
waiting update per job and phase, sees every phase change, and gets the freshest value when it
answers again. Terminal updates are never replaced or dropped for a newer one.
"""

from __future__ import annotations

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

    def post_progress(self, job_id: str, update: ProgressUpdate) -> bool: ...


@attrs.frozen
class _Pending:
    job_id: str
    update: ProgressUpdate


class OrchestratorProgressReporter:
    """Best-effort progress: one try per update, sent in order from a background thread.

    Never raises and never blocks the caller for longer than it takes to queue an update.
    Call :meth:`close` at shutdown so that the last updates (the terminal ones) go out.

    Args:
        client: sends one update, once, and never raises.
        max_pending: updates waiting beyond this are dropped (``running`` ones first).
    """

    def __init__(self, client: ProgressSender, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self._client = client
        self._max_pending = max_pending
        self._changed = threading.Condition()
        self._waiting: deque[_Pending] = deque()
        self._sending = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="progress-sender", daemon=True)
        self._thread.start()

    def report(self, job_id: str, update: ProgressUpdate) -> None:
        try:
            with self._changed:
                if self._closed:
                    log.debug("progress for job %s dropped: the reporter is closed", job_id)
                    return
                self._enqueue(_Pending(job_id, update))
                self._changed.notify_all()
        except Exception:  # the port's promise: never raise into the job
            log.warning("progress for job %s dropped", job_id, exc_info=True)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued update has been tried; ``False`` if ``timeout`` ran out."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._waiting and not self._sending, timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Send what is queued (for up to ``timeout`` seconds), then stop the sender."""
        drained = self.flush(timeout)
        with self._changed:
            if not drained and self._waiting:
                log.warning("%d progress update(s) not sent at shutdown", len(self._waiting))
                self._waiting.clear()
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout)

    # -- the queue and the sender ---------------------------------------------------------

    def _enqueue(self, item: _Pending) -> None:
        if not item.update.is_terminal:
            for index, waiting in enumerate(self._waiting):
                if (
                    waiting.job_id == item.job_id
                    and not waiting.update.is_terminal
                    and waiting.update.phase == item.update.phase
                ):
                    self._waiting[index] = item  # the newer value replaces the one not yet sent
                    return
        if len(self._waiting) >= self._max_pending:
            oldest_running = next((w for w in self._waiting if not w.update.is_terminal), None)
            if oldest_running is not None and item.update.is_terminal:
                self._waiting.remove(oldest_running)
            elif not item.update.is_terminal:
                log.debug("progress for job %s dropped: %d updates waiting", item.job_id, len(self._waiting))
                return
        self._waiting.append(item)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting or self._closed)
                if not self._waiting:
                    return
                item = self._waiting.popleft()
                self._sending = True
            try:
                self._client.post_progress(item.job_id, item.update)
            except Exception:  # post_progress promises not to raise; the sender must survive if it does
                log.warning("progress for job %s not sent", item.job_id, exc_info=True)
            finally:
                with self._changed:
                    self._sending = False
                    self._changed.notify_all()
