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
from buffer_worker.heartbeat import Heartbeater, worker_id_of
from buffer_worker.job_run import JobRunner
from buffer_worker.leftovers import HEAD_START_S, LeftoverStatuses
from buffer_worker.metrics import WorkerMetrics
from fastwan_adapters.config import ConfigError
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.logs import bind_job
from fastwan_adapters.orchestrator import OrchestratorClient
from fastwan_core import GenerateVideo, Job, JobValidationError, WorkerInfo, is_job_id, parse_job
from fastwan_core.ports import Clock

__all__ = ["BufferWorker"]

log = logging.getLogger(__name__)

_FIRST_ROUND_S: Final = 1.0  # before the first claim, the stop is looked at at least this often
_SEEN_CHARS: Final = 80  # how much of an unusable id a log line shows
_LEFTOVERS_JOIN_S: Final = 1.0


class BufferWorker:
    """Claims and runs jobs one at a time; see the module's docstring. Composed by the
    container (``containers.py``), which builds each part.

    Args:
        leftovers: what the last run left to report, sent in the background from the start.
        jobs: runs and ends each claimed job.
        load_usecase: loads and warms the model and returns the use case (slow: called once,
            after the heartbeat has started).
        worker: who claims (``worker_id``, ``gpu_class``, ``worker_version``).
    """

    def __init__(
        self,
        *,
        client: OrchestratorClient,
        heartbeat: Heartbeater,
        board: WorkerBoard,
        control: StopControl,
        leftovers: LeftoverStatuses,
        jobs: JobRunner,
        load_usecase: Callable[[], GenerateVideo],
        metrics: WorkerMetrics,
        clock: Clock,
        worker: WorkerInfo,
        poll_interval_s: float,
    ) -> None:
        self._client = client
        self._heartbeat = heartbeat
        self._board = board
        self._control = control
        self._leftovers = leftovers
        self._jobs = jobs
        self._load_usecase = load_usecase
        self._metrics = metrics
        self._clock = clock
        self._worker = worker
        self._worker_id = worker_id_of(worker)
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
        while not self._leftovers.first_round.wait(_FIRST_ROUND_S) and not self._control.stop.is_set():
            pass
        if not self._control.stop.is_set():
            log.info("ready: claiming jobs as %s (%s)", self._worker_id, self._worker.gpu_class)
        while not self._control.stop.is_set():  # a dead heartbeat sets it too (``on_death``)
            self._claim_once(usecase)
        return ExitCode.OK

    def _claim_once(self, usecase: GenerateVideo) -> None:
        began = self._clock.now()
        raw = self._client.claim_with_backoff(
            self._worker_id,
            stop=self._control.stop,
            gpu_class=self._worker.gpu_class,
            model_id=usecase.generator.model_id,
            worker_version=self._worker.worker_version,
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
        try:
            job: Job | JobValidationError = parse_job(raw)
        except JobValidationError as error:
            job = error
        job_id = job.musetalk_job_id if isinstance(job, Job) else job.job_id
        ticket = JobTicket(buffer_job_id, job_id, self._clock.now())
        with bind_job(job_id, buffer_job_id=buffer_job_id):
            if not self._jobs.admit(ticket):
                return
            if isinstance(job, JobValidationError):
                # The core's own answer to a bad job (and its final progress call).
                self._jobs.conclude(ticket, usecase.refuse(job))
            elif self._control.stop.is_set():
                log.info("claimed while stopping: handing the job back as worker_shutdown")
                ticket.stop(StopReason.SHUTDOWN)
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
