"""One claimed job: its thread, the wait for it (grace period, stop, give-up), and its end.

The claim loop hands a job here and gets it back ended: the job thread runs the core's use case,
``running`` goes out beside it (``running.py``), and the claim loop waits, stopping the job when
the worker leaves (the deadlines are ``StopControl.job_deadline``'s) and giving up on it if it
will not stop. Its one terminal status is then reported (``reporting.py``); on a second signal
the main thread reports it instead (:meth:`JobRunner.end_now`), through the same delivery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from buffer_worker.board import JobTicket, StopReason, WorkerBoard
from buffer_worker.control import StopControl
from buffer_worker.metrics import WorkerMetrics
from buffer_worker.reporting import StatusDelivery
from buffer_worker.running import RunningAnnouncer
from fastwan_adapters.logs import bind_job
from fastwan_adapters.orchestrator import ClaimJournal, OrchestratorClient
from fastwan_adapters.threads import daemon_thread
from fastwan_core import ErrorCode, GenerateVideo, Job, JobResult, Metrics, WorkerInfo
from fastwan_core.ports import Clock

__all__ = ["JobRunner"]

log = logging.getLogger("buffer_worker.worker")

_MONITOR_S: Final = 1.0  # the claim loop looks at the job in hand at least this often


class JobRunner:
    """Runs one job at a time for the claim loop.

    Attributes:
        usecase: the loaded use case (``None`` until the model is loaded; no job is claimed
            before), for the metrics of a job the worker ends itself.
    """

    def __init__(
        self,
        *,
        client: OrchestratorClient,
        journal: ClaimJournal,
        board: WorkerBoard,
        control: StopControl,
        metrics: WorkerMetrics,
        delivery: StatusDelivery,
        clock: Clock,
        worker: WorkerInfo,
    ) -> None:
        self._client = client
        self._journal = journal
        self._board = board
        self._control = control
        self._metrics = metrics
        self._delivery = delivery
        self._clock = clock
        self._worker = worker
        self.usecase: GenerateVideo | None = None
        self._job_thread: threading.Thread | None = None

    @property
    def job_running(self) -> bool:
        """A job thread is still running (the process must not wait for it at exit)."""
        return self._job_thread is not None and self._job_thread.is_alive()

    def admit(self, ticket: JobTicket) -> bool:
        """A job just claimed: ``False`` if it ended here before (its recorded end is reported
        again, it is not run again); else it is held in the claim journal until its status is in
        the outbox."""
        if self._delivery.report_again(ticket, self._control.delivery_window()):
            return False
        try:
            self._journal.record(ticket.buffer_job_id, ticket.job_id)
        except OSError as error:  # the job still runs, only without the crash net
            log.error("the claim journal cannot be written (%s): a crash now would lose the job", error)
        return True

    def run(self, job: Job, ticket: JobTicket, usecase: GenerateVideo) -> None:
        """Run ``job`` on its thread, wait for it (stopping it when the worker leaves), end it."""
        log.info("claimed buffer job %s", ticket.buffer_job_id)
        self._board.begin(ticket)
        self._metrics.busy.set(1)
        try:
            # The job id bound for logging travels into the job thread.
            self._job_thread = daemon_thread(
                self._execute, usecase, job, ticket, name=f"job-{ticket.buffer_job_id}"
            )
            announcer = RunningAnnouncer(
                ticket, client=self._client, control=self._control, board=self._board, worker=self._worker
            )
            self._job_thread.start()
            announcer.start()
            result = self._await(ticket)
            if ticket.reason is StopReason.LEASE_LOST:
                self._delivery.drop(ticket)
                return
            self.conclude(ticket, result, announcer)
        finally:
            self._board.end(ticket)
            self._metrics.busy.set(0)

    def _execute(self, usecase: GenerateVideo, job: Job, ticket: JobTicket) -> None:
        try:
            result = usecase.run(job, ticket)
        except BaseException as error:  # run() never raises; if it does, the job still ends
            log.critical("the use case raised", exc_info=True)
            result = JobResult.failure(
                ErrorCode.INTERNAL_ERROR,
                f"internal error: {type(error).__name__}",
                job_id=job.musetalk_job_id,
                metrics=usecase.metrics_for(self._clock.now() - ticket.started),
            )
        ticket.finish(result)
        self._control.wake.set()

    def _await(self, ticket: JobTicket) -> JobResult | None:
        """Wait for the job's result; stop it when the worker leaves; ``None`` if it would not stop."""
        while True:
            self._control.wake.clear()
            if ticket.done.is_set():
                return ticket.result
            if self._control.abort.is_set():
                return None  # the main thread reports the job; nothing is waited for any more
            due = self._control.job_deadline(self._clock.now(), _MONITOR_S)
            if due.stop is not None and ticket.stop(due.stop, self._control.restart_reason):
                leaving = "restarting" if due.stop is StopReason.RESTART else "stopping"
                log.warning("stopping the job in hand: the worker is %s", leaving)
            if due.give_up:
                log.error("the job did not stop within %.1f s; reporting it now", self._control.stop_wait_s)
                return None
            self._control.wake.wait(due.wait_s)

    def conclude(
        self, ticket: JobTicket, result: JobResult | None, announcer: RunningAnnouncer | None = None
    ) -> None:
        """Report the job's one terminal status (unless the main thread already has)."""
        final = self._delivery.end(
            ticket,
            result,
            fallback_metrics=self._fallback_metrics(ticket),
            window=self._control.delivery_window(),
            announcer=announcer,
        )
        if final is not None and final.fatal:
            self._control.request_restart(f"the GPU is unusable ({final.error})")

    def end_now(self) -> None:
        """The second signal (main thread): report the job in hand ``worker_shutdown`` now."""
        ticket = self._board.current()
        if ticket is not None and ticket.reason is not StopReason.LEASE_LOST:
            ticket.stop(StopReason.SHUTDOWN)
            with bind_job(ticket.job_id, buffer_job_id=ticket.buffer_job_id):
                self._delivery.end(
                    ticket,
                    ticket.result,
                    fallback_metrics=self._fallback_metrics(ticket),
                    window=self._control.abort,
                )

    def _fallback_metrics(self, ticket: JobTicket) -> Callable[[], Metrics]:
        """The use case's metrics for a job with no result of its own: who ran it, how long."""

        def metrics() -> Metrics:
            assert self.usecase is not None, "no job is claimed before the model is loaded"
            return self.usecase.metrics_for(self._clock.now() - ticket.started)

        return metrics
