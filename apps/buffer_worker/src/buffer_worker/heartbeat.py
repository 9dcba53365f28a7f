"""The heartbeat: on its own thread, every ``HEARTBEAT_INTERVAL_S``, from start to exit.

The worker it replaces sent heartbeats from its claim loop, so a running job silenced them and
the orchestrator marked busy workers offline. Here nothing but the HTTP call itself stands
between two ticks: generation, decoding and encoding run on another thread (and release the
GIL in torch and FFmpeg), and ticks are scheduled on a fixed cadence from the start, so a slow
answer delays one tick, never the ones after it.

The answer may name the job in hand in ``cancel_job_ids``: the job is then asked to stop at its
next step (the core reports it ``cancelled``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from buffer_worker.board import StopReason, WorkerBoard
from buffer_worker.metrics import WorkerMetrics
from fastwan_adapters.orchestrator import (
    Heartbeat,
    HeartbeatAnswer,
    OrchestratorAuthError,
    OrchestratorError,
)
from fastwan_core import WorkerInfo

__all__ = ["HeartbeatSender", "Heartbeater", "worker_id_of"]

log = logging.getLogger(__name__)


class HeartbeatSender(Protocol):
    """What the heartbeat needs of the client (``OrchestratorClient`` satisfies it)."""

    def heartbeat(self, worker_id: str, beat: Heartbeat | Mapping[str, Any]) -> HeartbeatAnswer: ...


def worker_id_of(worker: WorkerInfo) -> str:
    """The id this worker heartbeats and claims as; a buffer worker cannot be without one."""
    if worker.worker_id is None:
        raise ValueError("a buffer worker needs its worker id (BUFFER_WORKER_ID)")
    return worker.worker_id


class Heartbeater:
    """Sends the board's state as a heartbeat every ``interval_s`` on a daemon thread.

    Args:
        worker: who beats (``worker_id``, ``gpu_class``, ``worker_version``).
        on_death: called (on the heartbeat thread) if the thread ends other than by
            :meth:`stop`: the one place a dead heartbeat is noticed, and the worker must not go
            on without it (``StopControl.side_task_died``).
    """

    def __init__(
        self,
        client: HeartbeatSender,
        board: WorkerBoard,
        *,
        worker: WorkerInfo,
        interval_s: float,
        metrics: WorkerMetrics,
        on_death: Callable[[BaseException | None], None],
        clock: Callable[[], float] = time.monotonic,
        restarts: int | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"HEARTBEAT_INTERVAL_S must be positive, got {interval_s}")
        if worker.gpu_class is None:
            raise ValueError("a heartbeat needs the GPU class (GPU_CLASS, else the GPU's name)")
        self._client = client
        self._board = board
        self._worker_id = worker_id_of(worker)
        self._gpu_class = worker.gpu_class
        self._version = worker.worker_version
        self._interval = interval_s
        self._metrics = metrics
        self._on_death = on_death
        self._clock = clock
        self._restarts = restarts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def stop(self, timeout: float | None = None) -> None:
        """End the ticks; with ``timeout``, wait that long for a call in flight to end."""
        self._stop.set()
        if self.started and timeout is not None:
            self._thread.join(timeout)

    def send_final(self) -> bool:
        """One last heartbeat, ``stopping``, tried once: the orchestrator learns this worker is going.

        Never raises: it runs on the way out, when whatever broke the heartbeat may still be broken.
        """
        self._board.stopping()
        try:
            return self.beat()
        except Exception as error:
            log.error("the last heartbeat could not be sent: %s", type(error).__name__)
            return False

    def beat(self) -> bool:
        """Send one heartbeat now and act on its answer; ``False`` if it failed (logged)."""
        snapshot = self._board.snapshot()
        heartbeat = Heartbeat(
            status=snapshot.status,
            gpu_class=self._gpu_class,
            capacity=1,
            error=snapshot.error,
            current_job_id=snapshot.current_job_id,
            phase=snapshot.phase,
            progress=snapshot.progress,
            worker_version=self._version,
            restarts=self._restarts,
        )
        try:
            answer = self._client.heartbeat(self._worker_id, heartbeat)
        except OrchestratorAuthError:
            self._metrics.heartbeat(ok=False)  # the client logged it once, naming INTERNAL_API_KEY
            return False
        except OrchestratorError as error:
            self._metrics.heartbeat(ok=False)
            log.warning("heartbeat failed, next in %.1f s: %s", self._interval, error)
            return False
        self._metrics.heartbeat(ok=True)
        ticket = snapshot.ticket
        cancelled = ticket is not None and answer.cancels(*ticket.ids())
        if cancelled and ticket is not None and ticket.stop(StopReason.CANCELLED):
            log.info("the orchestrator cancelled buffer job %s; stopping it", ticket.buffer_job_id)
        return True

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            next_at = self._clock()
            while not self._stop.is_set():
                self.beat()
                next_at += self._interval
                delay = next_at - self._clock()
                if delay < 0:  # a call took longer than the interval: beat now, then on cadence
                    next_at, delay = self._clock(), 0.0
                if self._stop.wait(delay):
                    return
        except BaseException as caught:
            error = caught
            log.critical("the heartbeat thread died: %s", type(caught).__name__, exc_info=True)
        finally:
            if not self._stop.is_set():
                self._on_death(error)
