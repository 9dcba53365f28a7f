"""When and why the worker stops: the stop event, the wake-up call, and the deadlines.

procrastinate's shape, with threads: one stop event that every wait in the claim loop honours
(the poll pause, the claim backoff, a status retry), a wake-up event that the job thread, the
running-status thread and the heartbeat (when it dies) set whenever the claim loop should look
again, the reason to leave, which decides the exit code, and the deadlines that follow from it
for the job in hand (:meth:`StopControl.job_deadline`) and for its status (``DeliveryWindow``).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable

import attrs

from buffer_worker.board import StopReason

__all__ = ["DeliveryWindow", "JobDeadline", "Leaving", "StopControl"]

log = logging.getLogger(__name__)


class Leaving(enum.Enum):
    """Why the worker is leaving: ``SHUTDOWN`` (a signal, exit 0) or ``RESTART`` (it cannot
    go on: heartbeat dead, GPU unusable; exit non-zero so that the host restarts it)."""

    SHUTDOWN = "shutdown"
    RESTART = "restart"


@attrs.frozen
class JobDeadline:
    """Where the job in hand stands against the worker's deadlines, at one moment.

    Attributes:
        stop: ask the job to stop now, for this reason (``None``: not yet, or not leaving).
        give_up: it has had its time to stop: report it without a result of its own.
        wait_s: look again within this long.
    """

    stop: StopReason | None
    give_up: bool
    wait_s: float


class StopControl:
    """The worker's stop state, shared by its threads.

    Args:
        shutdown_grace_s: how long the job in hand may still run after a stop signal.
        stop_wait_s: once a job is asked to stop (grace over, or restart), how long to wait for
            it to reach its next step before reporting it without its own metrics.
        final_report_s: after that, how long a terminal status may still be retried before the
            worker exits and leaves it in the outbox for its next start.
    """

    def __init__(
        self,
        *,
        shutdown_grace_s: float,
        stop_wait_s: float = 3.0,
        final_report_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.abort = threading.Event()
        self.shutdown_grace_s = shutdown_grace_s
        self.stop_wait_s = stop_wait_s
        self.final_report_s = final_report_s
        self.clock = clock
        self._lock = threading.Lock()
        self._leaving: Leaving | None = None
        self._since: float | None = None
        self._restart_reason: str | None = None

    @property
    def leaving(self) -> Leaving | None:
        return self._leaving

    @property
    def restart_reason(self) -> str | None:
        return self._restart_reason

    def request_stop(self) -> None:
        """The first SIGTERM/SIGINT: claim nothing more, let the job in hand finish in grace."""
        self._leave(Leaving.SHUTDOWN)

    def request_restart(self, reason: str) -> None:
        """The worker cannot go on; the job in hand is stopped now, not after a grace period."""
        with self._lock:
            if self._restart_reason is None:
                self._restart_reason = reason
        log.error("the worker must restart: %s", reason)
        self._leave(Leaving.RESTART)

    def side_task_died(self, error: BaseException | None) -> None:
        """The heartbeat's ``on_death``: a worker the orchestrator cannot see must not work."""
        what = type(error).__name__ if error is not None else "it returned"
        self.request_restart(f"the heartbeat thread stopped ({what})")

    def abort_now(self) -> None:
        """The second signal: every wait ends, the worker reports what it must and exits."""
        self.abort.set()
        self._leave(Leaving.SHUTDOWN)

    def _leave(self, leaving: Leaving) -> None:
        with self._lock:
            # A restart outranks a shutdown: the exit code must tell the host to restart.
            if self._leaving is None or (leaving is Leaving.RESTART and self._leaving is Leaving.SHUTDOWN):
                if self._leaving is None:
                    self._since = self.clock()
                self._leaving = leaving
        self.stop.set()
        self.wake.set()

    def stop_job_at(self) -> float | None:
        """When the job in hand must be asked to stop: now for a restart, after the grace
        period for a shutdown, never while the worker is not leaving."""
        if self._since is None:
            return None
        if self._leaving is Leaving.RESTART:
            return self._since
        return self._since + self.shutdown_grace_s

    def give_up_at(self) -> float | None:
        """When to stop waiting for a job that was asked to stop."""
        stop_at = self.stop_job_at()
        return None if stop_at is None else stop_at + self.stop_wait_s

    def job_deadline(self, now: float, longest: float) -> JobDeadline:
        """What the claim loop does about the job in hand at ``now``: nothing while the worker
        stays; once it leaves, ask the job to stop when :meth:`stop_job_at` has come (for a
        restart if one is needed, else for a shutdown) and give up on it at :meth:`give_up_at`.
        ``wait_s`` runs to the next of those, ``longest`` at the most."""
        stop_at, give_up_at = self.stop_job_at(), self.give_up_at()
        if stop_at is None or give_up_at is None:
            return JobDeadline(None, give_up=False, wait_s=longest)
        if now < stop_at:
            return JobDeadline(None, give_up=False, wait_s=max(0.0, min(longest, stop_at - now)))
        reason = StopReason.RESTART if self._restart_reason is not None else StopReason.SHUTDOWN
        return JobDeadline(reason, give_up=now >= give_up_at, wait_s=max(0.0, min(longest, give_up_at - now)))

    def leave_by(self) -> float | None:
        """When the worker must be gone, reports included."""
        give_up = self.give_up_at()
        return None if give_up is None else give_up + self.final_report_s

    def delivery_window(self, until: threading.Event | None = None) -> DeliveryWindow:
        """A status delivery's stop; ``until`` closes it early (``running`` given up)."""
        return DeliveryWindow(self, until)


class DeliveryWindow:
    """The ``stop`` of a status delivery: open while the worker runs, closed by a second
    signal or once :meth:`StopControl.leave_by` has passed (the status then waits in the
    outbox for the next start), or by its own ``until`` event. Satisfies the client's
    ``StopSignal``."""

    def __init__(self, control: StopControl, until: threading.Event | None = None) -> None:
        self._control = control
        self._until = until

    def is_set(self) -> bool:
        if self._control.abort.is_set() or (self._until is not None and self._until.is_set()):
            return True
        leave_by = self._control.leave_by()
        return leave_by is not None and self._control.clock() >= leave_by

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else self._control.clock() + timeout
        while not self.is_set():
            now = self._control.clock()
            if deadline is not None and now >= deadline:
                return False
            leave_by = self._control.leave_by()
            slices = [0.5 if leave_by is None else max(0.0, leave_by - now)]
            if deadline is not None:
                slices.append(deadline - now)
            # Woken at once by a second signal; a first one only moves the deadline, so the
            # wait re-reads it at least every half second (``until`` every tenth).
            self._control.abort.wait(min([*slices, 0.5 if self._until is None else 0.1]))
        return True
