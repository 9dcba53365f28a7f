"""What the worker's threads share: the job in hand and what the heartbeat says about it.

Four threads look at one job: the claim loop (which owns it), the job thread (which runs it),
the heartbeat thread (which reports it and may be told to cancel it) and, on a second signal,
the main thread (which reports it one last time). Each hand-over is a method here, under one
lock, so no thread ever sees half an update.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from typing import Final

import attrs

from fastwan_adapters.orchestrator import WorkerStatus
from fastwan_core import ErrorCode, JobResult, JobState, Phase, ProgressUpdate

__all__ = ["BoardSnapshot", "JobTicket", "StopReason", "WorkerBoard"]

_MAX_ERROR_CHARS: Final = 500
# Jobs whose progress is no longer this worker's to send; only the last few can still have a
# thread that reports (a job left running at exit), so the memory is short.
_MAX_SILENCED: Final = 64


class StopReason(enum.Enum):
    """Why a job in hand is being stopped before its end.

    ``CANCELLED``: the orchestrator named it in ``cancel_job_ids``; reported ``cancelled``.
    ``LEASE_LOST``: a status call answered 404/409; the job is not ours, nothing is reported.
    ``SHUTDOWN``: SIGTERM/SIGINT and the grace period ran out; reported ``worker_shutdown``.
    ``RESTART``: the worker cannot go on (its heartbeat died); reported failed and retryable.
    """

    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"
    RESTART = "restart"


_STOP_CODES: Final = {
    StopReason.SHUTDOWN: ErrorCode.WORKER_SHUTDOWN,
    StopReason.RESTART: ErrorCode.INTERNAL_ERROR,
}
_STOP_MESSAGES: Final = {
    StopReason.CANCELLED: "job cancelled by the orchestrator",
    StopReason.SHUTDOWN: "the worker is shutting down and the job could not finish within its grace period",
    StopReason.RESTART: "the worker is restarting: it cannot go on",
}


class JobTicket:
    """One claimed job: its ids, its cancel signal, and its result once the job thread has one.

    It is the core's ``CancelSignal`` for the job (``is_set``). The first reason to stop wins:
    a job cancelled by the orchestrator and then caught by a shutdown stays ``CANCELLED``.

    Attributes:
        buffer_job_id: the id of the status endpoint.
        job_id: the orchestrator's ``musetalk_job_id`` (progress endpoint, output name), when
            the claimed job had a readable one.
        started: the clock's time at claim.
        done: set once the job thread has stored its result.
    """

    def __init__(self, buffer_job_id: str, job_id: str | None, started: float) -> None:
        self.buffer_job_id = buffer_job_id
        self.job_id = job_id
        self.started = started
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._reason: StopReason | None = None
        self._detail: str | None = None
        self._result: JobResult | None = None
        self._reported = False

    def __repr__(self) -> str:
        return (
            f"JobTicket(buffer_job_id={self.buffer_job_id!r}, job_id={self.job_id!r}, reason={self._reason})"
        )

    def is_set(self) -> bool:
        """The core's cancellation point asks this between steps and phases."""
        return self._reason is not None

    def stop(self, reason: StopReason, detail: str | None = None) -> bool:
        """Ask the job to stop; ``False`` if it was already asked (the first reason stands).

        ``detail`` says why a restart is needed; it ends up in the job's error message.
        """
        with self._lock:
            if self._reason is not None:
                return False
            self._reason, self._detail = reason, detail
            return True

    @property
    def reason(self) -> StopReason | None:
        return self._reason

    @property
    def code(self) -> ErrorCode:
        """The code the core reports a stopped job with (the core's ``CancelSignal``)."""
        return _STOP_CODES.get(self._reason, ErrorCode.CANCELLED) if self._reason else ErrorCode.CANCELLED

    @property
    def message(self) -> str:
        if self._reason is StopReason.RESTART and self._detail:
            return f"the worker is restarting: {self._detail}"
        return _STOP_MESSAGES.get(self._reason, "job cancelled") if self._reason else "job cancelled"

    def finish(self, result: JobResult) -> None:
        """Called once, by the job thread, with the core's result."""
        self._result = result
        self.done.set()

    @property
    def result(self) -> JobResult | None:
        return self._result if self.done.is_set() else None

    def claim_report(self) -> bool:
        """Take the right to send this job's terminal status: ``True`` once, to one caller.

        The claim loop and, on a second signal, the main thread may both try to end the job;
        exactly one terminal status must come of it.
        """
        with self._lock:
            if self._reported:
                return False
            self._reported = True
            return True

    def ids(self) -> tuple[str, str | None]:
        return self.buffer_job_id, self.job_id


@attrs.frozen
class BoardSnapshot:
    """What one heartbeat reports."""

    status: WorkerStatus
    current_job_id: str | None = None
    phase: Phase | None = None
    progress: float | None = None
    error: str | None = None
    ticket: JobTicket | None = attrs.field(default=None, eq=False)


class WorkerBoard:
    """The worker's shared state: status, the job in hand, its phase and progress, last error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = False
        self._ticket: JobTicket | None = None
        self._phase: Phase | None = None
        self._progress: float | None = None
        self._error: str | None = None
        self._silenced: deque[str] = deque(maxlen=_MAX_SILENCED)

    def begin(self, ticket: JobTicket) -> None:
        with self._lock:
            self._ticket, self._phase, self._progress = ticket, None, 0.0

    def end(self, ticket: JobTicket) -> None:
        with self._lock:
            if self._ticket is ticket:
                self._ticket, self._phase, self._progress = None, None, None

    def current(self) -> JobTicket | None:
        with self._lock:
            return self._ticket

    def stopping(self) -> None:
        """From now on heartbeats say ``stopping``: no more claims will come from this worker."""
        with self._lock:
            self._stopping = True

    def set_error(self, message: str | None) -> None:
        """The last error, sent with every heartbeat until a job succeeds (never a secret)."""
        with self._lock:
            self._error = message[:_MAX_ERROR_CHARS] if message else None

    def record(self, ticket: JobTicket, result: JobResult) -> None:
        """A job ended: a success clears the last error, a failure becomes it."""
        if result.status is JobState.SUCCEEDED:
            self.set_error(None)
        elif result.error_code is not None:
            self.set_error(f"buffer job {ticket.buffer_job_id}: {result.error_code.value}: {result.error}")

    def silence(self, job_id: str | None) -> None:
        """Send no more progress of ``job_id`` (its lease is lost, or the worker has sent its
        final update itself)."""
        if job_id is not None:
            with self._lock:
                self._silenced.append(job_id)

    def observe(self, job_id: str, update: ProgressUpdate) -> bool:
        """Note a progress update of the job in hand; ``False`` if it must not be sent.

        Nothing is sent for a job whose lease is lost (another worker may have it now).
        """
        with self._lock:
            if job_id in self._silenced:
                return False
            ticket = self._ticket
            if ticket is None or ticket.job_id != job_id:
                return True
            if ticket.reason is StopReason.LEASE_LOST:
                return False
            if update.is_terminal:
                return True
            if update.phase is not None:
                self._phase = update.phase
            if update.progress is not None:
                self._progress = min(1.0, max(0.0, update.progress))
            return True

    def snapshot(self) -> BoardSnapshot:
        with self._lock:
            ticket = self._ticket
            if self._stopping:
                status = WorkerStatus.STOPPING
            else:
                status = WorkerStatus.BUSY if ticket is not None else WorkerStatus.IDLE
            return BoardSnapshot(
                status=status,
                current_job_id=ticket.buffer_job_id if ticket is not None else None,
                phase=self._phase if ticket is not None else None,
                progress=self._progress if ticket is not None else None,
                error=self._error,
                ticket=ticket,
            )
