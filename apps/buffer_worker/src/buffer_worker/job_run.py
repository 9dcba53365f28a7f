"""One claimed job: its thread, the wait for it (grace period, stop, give-up), and its end.

The claim loop hands a job here and gets it back ended: the job thread runs the core's use case,
``running`` goes out beside it (``running.py``), and the claim loop waits, stopping the job when
the worker leaves (after ``SHUTDOWN_GRACE_S``, or at once for a restart) and giving up on it if
it will not stop. Its one terminal status is then reported (``reporting.py``); on a second
signal the main thread reports it instead (:meth:`JobRunner.end_now`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from buffer_worker.board import JobTicket, StopReason, WorkerBoard
from buffer_worker.control import StopControl
from buffer_worker.heartbeat import Heartbeater
from buffer_worker.metrics import WorkerMetrics
from buffer_worker.outcomes import final_result
from buffer_worker.reporting import TerminalReports
from buffer_worker.running import RunningAnnouncer
from fastwan_adapters.logs import bind_job
from fastwan_adapters.orchestrator import ClaimJournal, OrchestratorClient
from fastwan_adapters.threads import daemon_thread
from fastwan_core import ErrorCode, GenerateVideo, Job, JobResult, Metrics
from fastwan_core.ports import Clock

__all__ = ["JobRunner"]

log = logging.getLogger("buffer_worker.worker")

_MONITOR_S: Final = 1.0  # the claim loop looks at the heartbeat thread at least this often


class JobRunner:
    """Runs one job at a time for the claim loop.

    Attributes:
        usecase: the loaded use case (``None`` until the model is loaded), for the metrics of
            a job the worker ends itself.
    """

    def __init__(
        self,
        *,
        client: OrchestratorClient,
        journal: ClaimJournal,
        heartbeat: Heartbeater,
        board: WorkerBoard,
        control: StopControl,
        metrics: WorkerMetrics,
        reports: TerminalReports,
        clock: Clock,
        worker_id: str,
        gpu_class: str,
        worker_version: str | None,
    ) -> None:
        self._client = client
        self._journal = journal
        self._heartbeat = heartbeat
        self._board = board
        self._control = control
        self._metrics = metrics
        self._reports = reports
        self._clock = clock
        self._worker_id = worker_id
        self._gpu_class = gpu_class
        self._version = worker_version
        self.usecase: GenerateVideo | None = None
        self._job_thread: threading.Thread | None = None

    @property
    def job_running(self) -> bool:
        """A job thread is still running (the process must not wait for it at exit)."""
        return self._job_thread is not None and self._job_thread.is_alive()

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
                ticket,
                client=self._client,
                control=self._control,
                board=self._board,
                clock=self._clock,
                worker_id=self._worker_id,
            )
            self._job_thread.start()
            announcer.start()
            result = self._await(ticket)
            if ticket.reason is StopReason.LEASE_LOST:
                log.warning(
                    "buffer job %s is no longer ours: dropped, nothing reported", ticket.buffer_job_id
                )
                self._board.silence(ticket.job_id)
                self._metrics.leases_lost.inc()
                self._journal.forget(ticket.buffer_job_id)
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
                metrics=self.fallback_metrics(ticket)(),
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
            if self._heartbeat.died and self._control.restart_reason is None:
                self._control.side_task_died(None)
            now = self._clock.now()
            timeout = _MONITOR_S
            stop_at, give_up_at = self._control.stop_job_at(), self._control.give_up_at()
            if stop_at is not None and give_up_at is not None:
                if now >= stop_at:
                    restart = self._control.restart_reason is not None
                    reason = StopReason.RESTART if restart else StopReason.SHUTDOWN
                    if ticket.stop(reason, now, self._control.restart_reason):
                        log.warning(
                            "stopping the job in hand: the worker is %s",
                            "restarting" if restart else "stopping",
                        )
                    if now >= give_up_at:
                        log.error(
                            "the job did not stop within %.1f s; reporting it now", self._control.stop_wait_s
                        )
                        return None
                    timeout = min(timeout, give_up_at - now)
                else:
                    timeout = min(timeout, stop_at - now)
            self._control.wake.wait(max(0.0, timeout))

    def conclude(
        self, ticket: JobTicket, result: JobResult | None, announcer: RunningAnnouncer | None = None
    ) -> None:
        """Report the job's one terminal status (unless the main thread already has)."""
        final = final_result(
            ticket,
            result,
            leaving=self._control.leaving,
            restart_reason=self._control.restart_reason,
            fallback_metrics=self.fallback_metrics(ticket),
        )
        if not ticket.claim_report():
            return
        self._reports.report(
            ticket,
            final,
            replaced=_replaced(result, final),
            window=self._control.delivery_window(),
            announcer=announcer,
        )
        if final.fatal:
            self._control.request_restart(f"the GPU is unusable ({final.error})")

    def fallback_metrics(self, ticket: JobTicket) -> Callable[[], Metrics]:
        """Metrics for a job with no result of its own: who ran it and for how long."""

        def metrics() -> Metrics:
            generator = self.usecase.generator if self.usecase is not None else None
            return Metrics(
                duration_sec=round(max(0.0, self._clock.now() - ticket.started), 4),
                model_id=generator.model_id if generator is not None else None,
                gpu_name=generator.device_name if generator is not None else None,
                gpu_class=self._gpu_class,
                worker_id=self._worker_id,
                worker_version=self._version,
            )

        return metrics

    def end_now(self) -> None:
        """The second signal (main thread): report the job in hand ``worker_shutdown`` now."""
        ticket = self._board.current()
        if ticket is not None and ticket.reason is not StopReason.LEASE_LOST:
            ticket.stop(StopReason.SHUTDOWN, self._clock.now())
            final = final_result(
                ticket,
                ticket.result,
                leaving=self._control.leaving,
                restart_reason=self._control.restart_reason,
                fallback_metrics=self.fallback_metrics(ticket),
            )
            if ticket.claim_report():
                with bind_job(ticket.job_id, buffer_job_id=ticket.buffer_job_id):
                    replaced = _replaced(ticket.result, final)
                    self._reports.report(ticket, final, replaced=replaced, window=self._control.abort)


def _replaced(result: JobResult | None, final: JobResult) -> bool:
    """The worker ends the job otherwise than the core did (so the core's final progress is wrong)."""
    return result is None or final.error_code is not result.error_code
