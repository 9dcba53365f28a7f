"""The claim loop: claim, run, report, claim again, until told to stop.

Threads, each with one job: the claim loop (here, :meth:`BufferWorker.run`) owns the job in hand
and decides when it ends; the job thread runs the core's use case; a short-lived thread sends
``running`` while the job already runs (``running.py``); the heartbeat has its own
(``heartbeat.py``), from the first second; what the last run left to report is sent on another
(``leftovers.py``). The main thread only receives signals (``supervisor.py``).

Every claimed job ends with exactly one terminal status, written to the outbox the moment the
job ends and then sent (``reporting.py``), except when the orchestrator says the job is no
longer ours (404/409): then nothing is kept and the loop goes on. A claimed job is in the claim
journal from before its work starts until its status is in the outbox, so a worker killed in
between still reports it at its next start (``recovery.py``). A job claimed again after it
ended here is reported again from its recorded result, not run again (``recent.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from buffer_worker.board import JobTicket, StopReason, WorkerBoard
from buffer_worker.control import StopControl
from buffer_worker.heartbeat import Heartbeater
from buffer_worker.job_run import JobRunner
from buffer_worker.leftovers import HEAD_START_S, LeftoverStatuses
from buffer_worker.metrics import WorkerMetrics
from buffer_worker.reporting import RUNNING_AFTER_END_S, TerminalReports
from fastwan_adapters.config import ConfigError
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.logs import bind_job
from fastwan_adapters.orchestrator import Backoff, ClaimJournal, OrchestratorClient, StatusOutbox
from fastwan_core import GenerateVideo, Job, JobValidationError, is_job_id
from fastwan_core.ports import Clock, ProgressReporter

__all__ = ["BufferWorker"]

log = logging.getLogger(__name__)

_MONITOR_S: Final = 1.0  # the claim loop looks at the heartbeat thread at least this often
_SEEN_CHARS: Final = 80  # how much of an unusable id a log line shows
_LEFTOVERS_JOIN_S: Final = 1.0


class BufferWorker:
    """Claims and runs jobs one at a time; see the module's docstring.

    Args:
        load_usecase: loads and warms the model and returns the use case (slow: called once,
            after the heartbeat has started).
        progress: the progress port without the board, for the final update of a job the
            worker ends itself (shutdown, restart).
        journal: the claimed job, on disk until its terminal status is in the outbox.
        discard_partial_output: removes what a job killed mid-write left of the named output.
        backoff: between rounds of sending what the last run left (``ORCHESTRATOR_RETRY_INITIAL_S``).
        running_after_end_s: how long a finished job's status waits for its ``running``.
    """

    def __init__(
        self,
        *,
        client: OrchestratorClient,
        outbox: StatusOutbox,
        journal: ClaimJournal,
        heartbeat: Heartbeater,
        board: WorkerBoard,
        control: StopControl,
        load_usecase: Callable[[], GenerateVideo],
        progress: ProgressReporter,
        metrics: WorkerMetrics,
        clock: Clock,
        worker_id: str,
        gpu_class: str,
        worker_version: str | None,
        poll_interval_s: float,
        discard_partial_output: Callable[[str], None] = lambda _name: None,
        backoff: Backoff | None = None,
        running_after_end_s: float = RUNNING_AFTER_END_S,
    ) -> None:
        self._client = client
        self._leftovers = LeftoverStatuses(
            journal,
            outbox,
            client,
            progress=progress,
            discard_partial_output=discard_partial_output,
            worker_id=worker_id,
            worker_version=worker_version,
            stop=control.stop,
            backoff=backoff or Backoff(),
        )
        self._reports = TerminalReports(
            client=client,
            outbox=outbox,
            journal=journal,
            board=board,
            progress=progress,
            metrics=metrics,
            clock=clock,
            worker_id=worker_id,
            running_after_end_s=running_after_end_s,
        )
        self._jobs = JobRunner(
            client=client,
            journal=journal,
            heartbeat=heartbeat,
            board=board,
            control=control,
            metrics=metrics,
            reports=self._reports,
            clock=clock,
            worker_id=worker_id,
            gpu_class=gpu_class,
            worker_version=worker_version,
        )
        self._journal = journal
        self._heartbeat = heartbeat
        self._board = board
        self._control = control
        self._load_usecase = load_usecase
        self._metrics = metrics
        self._clock = clock
        self._worker_id = worker_id
        self._gpu_class = gpu_class
        self._version = worker_version
        self._poll_interval = poll_interval_s
        self.exit_code: ExitCode | None = None

    # -- the claim loop's thread ------------------------------------------------------------

    def run(self) -> ExitCode:
        """Start heartbeating and sending what the last run left, load the model, then claim
        until stopped."""
        try:
            code = self._serve()
        except Exception:
            log.critical("the claim loop failed", exc_info=True)
            self._board.set_error("internal error in the claim loop")
            code = ExitCode.RESTART
        if self._control.restart_reason is not None and code is ExitCode.OK:
            code = ExitCode.RESTART
        if not self._control.abort.is_set():
            self._say_goodbye()
        self._leftovers.join(_LEFTOVERS_JOIN_S)  # stopped with the worker; before the client closes
        self.exit_code = code
        return code

    def request_stop(self) -> None:
        """The first signal: claim nothing more; the job in hand gets its grace period."""
        log.info("stop requested: finishing the job in hand, if any, then exiting")
        self._board.stopping()
        self._control.request_stop()

    @property
    def job_running(self) -> bool:
        """A job thread is still running (the process must not wait for it at exit)."""
        return self._jobs.job_running

    def _serve(self) -> ExitCode:
        self._leftovers.start()
        self._leftovers.first_try.wait(HEAD_START_S)  # the last run's news first, if it is quick
        self._heartbeat.start()
        try:
            usecase = self._jobs.usecase = self._load_usecase()
        except ConfigError as error:
            log.error("cannot start: %s", error)
            self._board.set_error(f"cannot start: {error}")
            return ExitCode.CONFIG
        except Exception as error:  # B2 unreachable, a CUDA error at load...: a restart may help
            log.critical("start-up failed: the model or the result store is not usable", exc_info=True)
            self._board.set_error(f"start-up failed: {type(error).__name__} (see the worker's log)")
            return ExitCode.RESTART
        self._metrics.ready.set(1)
        # Every leftover tried once before the first claim (most often during the model load).
        while not self._leftovers.first_round.wait(_MONITOR_S) and not self._control.stop.is_set():
            pass
        if not self._control.stop.is_set():
            log.info("ready: claiming jobs as %s (%s)", self._worker_id, self._gpu_class)
        while not self._control.stop.is_set():
            if self._heartbeat.died:
                self._control.side_task_died(None)
                break
            self._claim_once(usecase)
        return ExitCode.OK

    def _claim_once(self, usecase: GenerateVideo) -> None:
        began = self._clock.now()
        raw = self._client.claim_with_backoff(
            self._worker_id,
            stop=self._control.stop,
            gpu_class=self._gpu_class,
            model_id=usecase.generator.model_id,
            worker_version=self._version,
        )
        if raw is None:
            if not self._control.stop.is_set():
                self._metrics.claimed(job=False)
            # arq's poll: the time the claim took counts toward the interval.
            self._control.stop.wait(max(0.0, self._poll_interval - (self._clock.now() - began)))
            return
        self._metrics.claimed(job=True)
        self._take(raw, usecase)

    def _take(self, raw: Mapping[str, Any], usecase: GenerateVideo) -> None:
        buffer_job_id = raw.get("buffer_job_id")
        if not is_job_id(buffer_job_id):
            log.error(
                "claimed a job without a usable buffer_job_id (buffer_job_id=%s, musetalk_job_id=%s): "
                "it cannot be reported, skipped",
                _seen(buffer_job_id),
                _seen(raw.get("musetalk_job_id")),
            )
            return
        job: Job | None
        job_id: str | None
        try:
            job = Job.from_wire(raw)
            job_id = job.musetalk_job_id
        except JobValidationError as error:
            job, job_id = None, error.job_id
        ticket = JobTicket(buffer_job_id, job_id, self._clock.now())
        with bind_job(job_id, buffer_job_id=buffer_job_id):
            recorded = self._reports.recent.recall(buffer_job_id, job_id)
            if recorded is not None:
                self._reports.report_again(ticket, recorded, self._control.delivery_window())
                return
            try:
                self._journal.record(buffer_job_id, job_id)
            except OSError as error:  # the job still runs, only without the crash net
                log.error("the claim journal cannot be written (%s): a crash now would lose the job", error)
            if job is None:
                # The core's own answer to a bad job (and its final progress call).
                self._jobs.conclude(ticket, usecase.run_payload(dict(raw), ticket))
            elif self._control.stop.is_set():
                log.info("claimed while stopping: handing the job back as worker_shutdown")
                ticket.stop(StopReason.SHUTDOWN, self._clock.now())
                self._jobs.conclude(ticket, None)
            else:
                self._jobs.run(job, ticket, usecase)

    def _say_goodbye(self) -> None:
        self._heartbeat.stop(timeout=2.0)
        self._heartbeat.send_final()

    # -- the main thread, on a second signal -------------------------------------------------

    def abort(self) -> ExitCode:
        """The second signal: report the job in hand ``worker_shutdown`` (one try; else it
        stays in the outbox), send the last heartbeat, and return at once."""
        self._control.abort_now()
        self._jobs.end_now()
        self._heartbeat.stop()
        self._heartbeat.send_final()
        code = ExitCode.RESTART if self._control.restart_reason is not None else ExitCode.OK
        self.exit_code = code
        return code


def _seen(value: object) -> str:
    """An id as it came, for a log line: its repr, cut to a readable length."""
    shown = repr(value)
    return shown if len(shown) <= _SEEN_CHARS else f"{shown[: _SEEN_CHARS - 3]}..."
