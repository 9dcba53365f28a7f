"""The buffer worker: one asyncio program that claims, runs and reports jobs until told to stop.

One event loop runs all but the GPU work: the claim loop (load the model, then claim, run,
report, claim again), the heartbeat (every ``HEARTBEAT_INTERVAL_S``, from the first second to the
last), the statuses the last run left (``reporting.py``) and each job's ``running``. The
heartbeat and the leftovers are side tasks under :meth:`BufferWorker._watch`: a heartbeat that
ends stops the worker for a restart, since the orchestrator must not give work to a worker it
cannot see. The model's load and each job run on the job thread (``fastwan_adapters.job_runner``);
a job is stopped through its ticket, the core's cancellation signal.

A stop is :meth:`BufferWorker.stop` (the first SIGTERM/SIGINT: claim nothing more, the job in
hand has ``SHUTDOWN_GRACE_S``) or a restart (the heartbeat died, the GPU is unusable: the job is
stopped now). The job is then given ``stop_wait_s`` to reach its next step, else reported without
a result of its own, and statuses are retried ``final_report_s`` more before they are left in the
outbox (``_leave``). :meth:`BufferWorker.stop_now` (the second signal) cancels the claim loop: the
job in hand is reported ``worker_shutdown`` with one try, and the worker leaves.

Every claimed job ends with one terminal status, written to the outbox when the job ends and then
sent, unless the orchestrator says the job is no longer ours (404/409). It is in the claim journal
from before its work starts until its status is in the outbox, so a worker killed in between
still reports it at its next start (``recovery.py``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final

from buffer_worker.metrics import WorkerMetrics
from buffer_worker.reporting import StatusDelivery
from buffer_worker.settings import BufferWorkerSettings
from buffer_worker.ticket import JobTicket, StopReason, final_result
from fastwan_adapters.config import ConfigError
from fastwan_adapters.container import on_the_loop
from fastwan_adapters.deadline import first_of, pause
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.generator.errors import StartupStopped
from fastwan_adapters.job_runner import JobRunner
from fastwan_adapters.logs import bind_job
from fastwan_adapters.orchestrator import (
    Heartbeat,
    OrchestratorAuthError,
    OrchestratorClient,
    OrchestratorError,
    OrchestratorProgressReporter,
    WorkerStatus,
)
from fastwan_core import (
    ErrorCode,
    GenerateVideo,
    Job,
    JobResult,
    JobState,
    JobValidationError,
    Metrics,
    Phase,
    ProgressUpdate,
    WorkerInfo,
    is_job_id,
    parse_job,
)
from fastwan_core.ports import ProgressReporter

__all__ = ["BufferWorker", "JobProgress"]

log = logging.getLogger(__name__)
# The loggers of these lines, as before the worker became one program.
heartbeat_log = logging.getLogger("buffer_worker.heartbeat")
control_log = logging.getLogger("buffer_worker.control")
progress_log = logging.getLogger("buffer_worker.progress")

#: The most the first heartbeat waits for the first leftover's first try (the order of old).
HEAD_START_S: Final = 0.5
_GOODBYE_BEAT_S: Final = 2.0  # a heartbeat in flight at the end may finish within this
_LEFTOVERS_END_S: Final = 1.0
_ABORT_FLUSH_S: Final = 1.0  # on a second signal, the last progress updates get this long
_SEEN_CHARS: Final = 80  # how much of an unusable id a log line shows
_MAX_ERROR_CHARS: Final = 500
_MAX_SILENCED: Final = 64  # jobs whose progress is no longer ours to send: only the last few matter


class JobProgress:
    """The progress port the core reports to (from the job thread): each update goes to the
    worker's loop, where the worker judges it (its phase and progress go into the heartbeat;
    nothing is sent for a job no longer ours), then to ``sender``. Never raises."""

    def __init__(self, sender: ProgressReporter) -> None:
        self.sender = sender
        self._loop: asyncio.AbstractEventLoop | None = None
        self._judge: Callable[[str, ProgressUpdate], bool] = lambda _job_id, _update: True

    def attach(self, loop: asyncio.AbstractEventLoop, judge: Callable[[str, ProgressUpdate], bool]) -> None:
        self._loop, self._judge = loop, judge

    def report(self, job_id: str, update: ProgressUpdate) -> None:
        try:
            if self._loop is None:
                raise RuntimeError("the worker is not running")
            self._loop.call_soon_threadsafe(self._take, job_id, update)
        except RuntimeError as error:  # not running, or its loop is closed: the worker is gone
            progress_log.warning("progress for job %s not reported: %s", job_id, error)

    def _take(self, job_id: str, update: ProgressUpdate) -> None:
        try:
            if self._judge(job_id, update):
                self.sender.report(job_id, update)
        except Exception:
            progress_log.warning("progress for job %s not reported", job_id, exc_info=True)


class BufferWorker:
    """Claims and runs jobs one at a time; see the module's docstring.

    Args:
        progress: the port the use case reports to; attached to this worker's loop when it runs.
        load_usecase: loads and warms the model (slow: once, on the job thread, heartbeating).
        startup_stop: what ``load_usecase`` watches (``GenerationContainer.stop``): set when the
            worker leaves, it ends a download (its attempts and their waits) at once and the
            load between its steps.
        stop_wait_s: how long a job asked to stop has to reach its next step.
        final_report_s: after that, how long a terminal status may still be retried.
    """

    def __init__(
        self,
        *,
        settings: BufferWorkerSettings,
        client: OrchestratorClient,
        delivery: StatusDelivery,
        progress: JobProgress,
        load_usecase: Callable[[], GenerateVideo],
        metrics: WorkerMetrics,
        worker: WorkerInfo,
        startup_stop: threading.Event | None = None,
        stop_wait_s: float = 3.0,
        final_report_s: float = 5.0,
    ) -> None:
        if worker.worker_id is None or worker.gpu_class is None:
            raise ValueError("a buffer worker needs its id (BUFFER_WORKER_ID) and GPU class (GPU_CLASS)")
        self._settings = settings
        self._client = client
        self._delivery = delivery
        self._progress = progress
        self._load_usecase = load_usecase
        self._startup_stop = startup_stop if startup_stop is not None else threading.Event()
        self._metrics = metrics
        self._worker = worker
        self._worker_id: str = worker.worker_id
        self._gpu_class: str = worker.gpu_class
        self._stop_wait_s = stop_wait_s
        self._final_report_s = final_report_s
        self.runner = JobRunner()  # the model's load and the jobs, one at a time
        self._usecase: GenerateVideo | None = None
        self._work: asyncio.Task[ExitCode] | None = None
        # Leaving (``_leave``): since when, to restart or not, and what follows.
        self._stop = asyncio.Event()  # claim nothing more
        self._give_up = asyncio.Event()  # the job in hand had its time to stop
        self._window = asyncio.Event()  # statuses are tried once more at the most
        self._since: float | None = None
        self._restart_reason: str | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._aborted = False
        # What the heartbeat says.
        self._beats_end = asyncio.Event()
        self._stopping = False
        self._ticket: JobTicket | None = None
        self._phase: Phase | None = None
        self._done: float | None = None
        self._error: str | None = None
        self._silenced: deque[str] = deque(maxlen=_MAX_SILENCED)

    async def run(self) -> ExitCode:
        """Heartbeat and send what the last run left, load the model, claim until stopped."""
        self._progress.attach(asyncio.get_running_loop(), self._judge)
        async with on_the_loop(self._client, self._progress.sender):
            leftovers = self._watch(self._delivery.send_leftovers(self._stop), "leftovers")
            await first_of(self._delivery.first_try.wait(), asyncio.sleep(HEAD_START_S))
            heartbeat = self._watch(self._heartbeats(), "heartbeat", must_run=True)
            self._work = asyncio.create_task(self._load_and_claim())
            if self._aborted:
                self._work.cancel()
            try:
                code = await self._work
            except asyncio.CancelledError:
                if not (self._aborted and self._work.cancelled()):
                    raise
                code = ExitCode.OK  # the second signal
            except Exception:
                log.critical("the claim loop failed", exc_info=True)
                self._set_error("internal error in the claim loop")
                code = ExitCode.RESTART
            if self._delivery.lost and code is ExitCode.OK:  # a status neither sent nor kept
                code = ExitCode.RESTART
            await self._goodbye(heartbeat)
            await asyncio.wait({leftovers}, timeout=_LEFTOVERS_END_S)  # stopped with the worker
            leftovers.cancel()
            if self._aborted and isinstance(self._progress.sender, OrchestratorProgressReporter):
                await self._progress.sender.aclose(_ABORT_FLUSH_S)
        self.runner.close()
        return ExitCode.RESTART if code is ExitCode.OK and self._restart_reason else code

    def stop(self) -> None:
        """The first signal: claim nothing more; the job in hand gets its grace period."""
        log.info("stop requested: finishing the job in hand, if any, then exiting")
        self._stopping = True
        self._leave()

    def stop_now(self) -> None:
        """The second signal: report the job in hand ``worker_shutdown`` (one try; else it stays
        in the outbox), send the last heartbeat, and leave at once."""
        self._aborted = True
        self._leave()
        self._window.set()
        if self._work is not None:
            self._work.cancel()

    # -- the claim loop ---------------------------------------------------------------------------

    async def _load_and_claim(self) -> ExitCode:
        load = asyncio.ensure_future(self.runner.run(self._load_usecase))
        try:
            await first_of(load, self._give_up.wait())  # a stop ends the load (``_leave``)
            if not load.done():  # a load step that does not look at the stop: left on its thread
                log.error("the start-up did not stop within %.1f s; leaving", self._stop_wait_s)
                return ExitCode.OK
            usecase = self._usecase = load.result()
        except StartupStopped as error:  # the worker is leaving: nothing failed
            log.info("start-up stopped: %s", error)
            return ExitCode.OK
        except ConfigError as error:
            log.error("cannot start: %s", error)
            self._set_error(f"cannot start: {error}")
            return ExitCode.CONFIG
        except Exception as error:  # B2 unreachable, a CUDA error at load...: a restart may help
            log.critical("start-up failed: the model or the result store is not usable", exc_info=True)
            self._set_error(f"start-up failed: {type(error).__name__} (see the worker's log)")
            return ExitCode.RESTART
        self._metrics.ready.set(1)
        # Every leftover tried once before the first claim (most often during the model load).
        await first_of(self._delivery.first_round.wait(), self._stop.wait())
        if not self._stop.is_set():
            log.info("ready: claiming jobs as %s (%s)", self._worker_id, self._gpu_class)
        while not self._stop.is_set():  # a dead heartbeat sets it too
            began = time.monotonic()
            raw = await self._client.claim_with_backoff(
                self._worker_id,
                stop=self._stop,
                gpu_class=self._gpu_class,
                model_id=usecase.generator.model_id,
                worker_version=self._worker.worker_version,
            )
            if raw is not None or not self._stop.is_set():
                self._metrics.claimed(job=raw is not None)
            if raw is not None:
                await self._take(raw, usecase)
            else:  # arq's poll: the time the claim took counts toward the interval
                await pause(self._stop, self._settings.poll_interval_s - (time.monotonic() - began))
        return ExitCode.OK

    async def _take(self, raw: Mapping[str, Any], usecase: GenerateVideo) -> None:
        try:
            job: Job | JobValidationError = parse_job(raw)
        except JobValidationError as error:
            job = error
        job_id = job.musetalk_job_id if isinstance(job, Job) else job.job_id
        buffer_job_id = raw.get("buffer_job_id")
        if not is_job_id(buffer_job_id):
            self._unreportable(raw, job, job_id, usecase)
            return
        ticket = JobTicket(buffer_job_id, job_id, time.monotonic())
        with bind_job(job_id, buffer_job_id=buffer_job_id):
            if not await self._delivery.admit(ticket, self._window):
                return  # it ended here before: its end was reported again
            if isinstance(job, JobValidationError):
                await self._conclude(ticket, usecase.refuse(job))  # the core's answer to a bad job
            elif self._stop.is_set():
                log.info("claimed while stopping: handing the job back as worker_shutdown")
                ticket.stop(StopReason.SHUTDOWN)
                await self._conclude(ticket, None)
            else:
                await self._run(job, ticket, usecase)

    def _unreportable(
        self,
        raw: Mapping[str, Any],
        job: Job | JobValidationError,
        job_id: str | None,
        usecase: GenerateVideo,
    ) -> None:
        """A job claimed without a usable ``buffer_job_id`` has no status to send (the status
        endpoint is keyed by it): it is skipped. When its ``musetalk_job_id`` is usable, the
        orchestrator hears of it at once through the core's refusal (a ``failed`` progress call,
        ``invalid_input``, naming the field) instead of waiting for its own timeout."""
        log.error(
            "claimed a job without a usable buffer_job_id (buffer_job_id=%s, musetalk_job_id=%s): "
            "no status can be sent for it, skipped%s",
            _seen(raw.get("buffer_job_id")),
            _seen(raw.get("musetalk_job_id")),
            "; its failure goes out as progress" if job_id is not None else "",
        )
        if job_id is None:
            return
        problems = list(job.errors) if isinstance(job, JobValidationError) else []
        if not any(problem.startswith("buffer_job_id") for problem in problems):  # it was missing
            problems.insert(0, "buffer_job_id is required in buffer mode")
        usecase.refuse(JobValidationError(problems, job_id=job_id))

    # -- the job in hand --------------------------------------------------------------------------

    async def _run(self, job: Job, ticket: JobTicket, usecase: GenerateVideo) -> None:
        """The job on the job thread, ``running`` beside it; then its end."""
        log.info("claimed buffer job %s", ticket.buffer_job_id)
        self._ticket, self._phase, self._done = ticket, None, 0.0
        self._metrics.busy.set(1)
        work = asyncio.ensure_future(self.runner.run(functools.partial(self._execute, usecase, job, ticket)))
        running = asyncio.create_task(self._delivery.announce_running(ticket, self._window))
        try:
            try:
                await first_of(work, self._give_up.wait())
            except asyncio.CancelledError:  # the second signal: reported now, with one try
                ticket.stop(StopReason.SHUTDOWN)
                await self._conclude(ticket, None, running)
                raise
            if not work.done():
                log.error("the job did not stop within %.1f s; reporting it now", self._stop_wait_s)
            if ticket.reason is StopReason.LEASE_LOST:
                self._delivery.drop(ticket)
            else:
                await self._conclude(ticket, work.result() if work.done() else None, running)
        finally:
            if ticket.reason is StopReason.LEASE_LOST:
                self._silence(ticket.job_id)
            self._ticket = self._phase = self._done = None
            self._metrics.busy.set(0)

    def _execute(self, usecase: GenerateVideo, job: Job, ticket: JobTicket) -> JobResult:
        """The job, on the job thread."""
        try:
            return usecase.run(job, ticket.cancellation)
        except BaseException as error:  # run() never raises; if it does, the job still ends
            log.critical("the use case raised", exc_info=True)
            return JobResult.failure(
                ErrorCode.INTERNAL_ERROR,
                f"internal error: {type(error).__name__}",
                job_id=job.musetalk_job_id,
                metrics=usecase.metrics_for(time.monotonic() - ticket.started),
            )

    async def _conclude(
        self, ticket: JobTicket, result: JobResult | None, running: asyncio.Task[None] | None = None
    ) -> None:
        """Report the job's one terminal status: the core's ``result``, or the worker's own when it
        has none (``final_result``). A success clears the heartbeat's last error; a failure is it."""
        own = functools.partial(self._metrics_of, ticket)
        final = final_result(ticket, result, restart_reason=self._restart_reason, fallback_metrics=own)
        replaced = result is None or final.error_code is not result.error_code
        if replaced:
            self._silence(ticket.job_id)  # the core's own final progress, should it still come
        if final.status is JobState.SUCCEEDED:
            self._set_error(None)
        elif final.error_code is not None:
            self._set_error(f"buffer job {ticket.buffer_job_id}: {final.error_code.value}: {final.error}")
        await self._delivery.end(ticket, final, replaced=replaced, window=self._window, running=running)
        if final.fatal:
            self._leave(restart=f"the GPU is unusable ({final.error})")

    def _metrics_of(self, ticket: JobTicket) -> Metrics:
        """The metrics of a job with no result of its own: who ran it, how long."""
        assert self._usecase is not None, "no job is claimed before the model is loaded"
        return self._usecase.metrics_for(time.monotonic() - ticket.started)

    # -- leaving ----------------------------------------------------------------------------------

    def _leave(self, restart: str | None = None) -> None:
        """Claim nothing more, and schedule what follows: the job in hand is asked to stop (after
        the grace period, or now for a restart), given up ``stop_wait_s`` later, and statuses end
        ``final_report_s`` after that. A restart outranks a shutdown (the exit code must tell the
        host to restart); the time counts from the first request."""
        loop = asyncio.get_running_loop()
        first = self._since is None
        if self._since is None:
            self._since = loop.time()
        if restart is not None and self._restart_reason is None:
            self._restart_reason = restart
            control_log.error("the worker must restart: %s", restart)
        elif not first:
            return
        self._stop.set()
        self._startup_stop.set()  # a start-up under way has no grace period: nothing is in hand
        for timer in self._timers:
            timer.cancel()
        stop_at = self._since + (0.0 if self._restart_reason else self._settings.shutdown_grace_s)
        give_up_at = stop_at + self._stop_wait_s
        self._timers = [
            loop.call_at(stop_at, self._stop_job),
            loop.call_at(give_up_at, self._give_up.set),
            loop.call_at(give_up_at + self._final_report_s, self._window.set),
        ]

    def _stop_job(self) -> None:
        reason = StopReason.RESTART if self._restart_reason else StopReason.SHUTDOWN
        if self._ticket is not None and self._ticket.stop(reason, self._restart_reason):
            leaving = "restarting" if reason is StopReason.RESTART else "stopping"
            log.warning("stopping the job in hand: the worker is %s", leaving)

    def _watch(
        self, coroutine: Coroutine[Any, Any, None], name: str, *, must_run: bool = False
    ) -> asyncio.Task[None]:
        """``coroutine`` as a side task: if it fails (or, ``must_run``, returns) before the worker
        ends it, the worker must restart, for it cannot go on without it."""

        def ended(task: asyncio.Task[None]) -> None:
            error = None if task.cancelled() else task.exception()
            if task.cancelled() or self._beats_end.is_set() or (error is None and not must_run):
                return
            what = type(error).__name__ if error is not None else "it returned"
            heartbeat_log.critical("the %s died: %s", name, what, exc_info=error)
            self._leave(restart=f"the {name} thread stopped ({what})")

        task = asyncio.create_task(coroutine, name=name)
        task.add_done_callback(ended)
        return task

    # -- the heartbeat ----------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        """On a fixed cadence from the start: a slow answer delays one beat, not the ones after."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self._beat()
            next_at = max(next_at + self._settings.heartbeat_interval_s, loop.time())
            if await pause(self._beats_end, next_at - loop.time()):
                return

    async def _beat(self) -> None:
        """One heartbeat and what its answer says: a ``cancel_job_ids`` naming the job in hand
        stops it. A failure is logged; the next beat is the retry."""
        ticket = self._ticket
        busy = WorkerStatus.BUSY if ticket is not None else WorkerStatus.IDLE
        heartbeat = Heartbeat(
            status=WorkerStatus.STOPPING if self._stopping else busy,
            gpu_class=self._gpu_class,
            capacity=1,
            error=self._said_error(),
            current_job_id=ticket.buffer_job_id if ticket is not None else None,
            phase=self._phase if ticket is not None else None,
            progress=self._done if ticket is not None else None,
            worker_version=self._worker.worker_version,
            restarts=self._settings.restarts,
        )
        try:
            answer = await self._client.heartbeat(self._worker_id, heartbeat)
        except OrchestratorError as error:
            self._metrics.heartbeat(ok=False)
            if not isinstance(error, OrchestratorAuthError):  # the client logged that once
                interval = self._settings.heartbeat_interval_s
                heartbeat_log.warning("heartbeat failed, next in %.1f s: %s", interval, error)
            return
        self._metrics.heartbeat(ok=True)
        if ticket is not None and answer.cancels(*ticket.ids()) and ticket.stop(StopReason.CANCELLED):
            heartbeat_log.info("the orchestrator cancelled buffer job %s; stopping it", ticket.buffer_job_id)

    async def _goodbye(self, heartbeat: asyncio.Task[None]) -> None:
        """The beats end (one in flight may finish), then the last, ``stopping``, tried once."""
        self._beats_end.set()
        await asyncio.wait({heartbeat}, timeout=0.0 if self._aborted else _GOODBYE_BEAT_S)
        heartbeat.cancel()
        self._stopping = True
        try:
            await self._beat()
        except Exception as error:  # whatever broke the heartbeat may still be broken
            heartbeat_log.error("the last heartbeat could not be sent: %s", type(error).__name__)

    def _judge(self, job_id: str, update: ProgressUpdate) -> bool:
        """A progress update of the core, on the loop: noted for the heartbeat; ``False`` if it
        must not be sent (the job's lease is lost, or the worker sent its final update itself)."""
        ticket = self._ticket
        if job_id in self._silenced:
            return False
        if ticket is None or ticket.job_id != job_id:
            return True
        if ticket.reason is StopReason.LEASE_LOST:
            return False
        if not update.is_terminal:
            if update.phase is not None:
                self._phase = update.phase
            if update.progress is not None:
                self._done = min(1.0, max(0.0, update.progress))
        return True

    def _silence(self, job_id: str | None) -> None:
        if job_id is not None:
            self._silenced.append(job_id)

    def _said_error(self) -> str | None:
        """The heartbeat's ``error``: the worker's own trouble (``STATE_DIR``), then the last error."""
        said = "; ".join(part for part in (self._delivery.trouble(), self._error) if part)
        return said[:_MAX_ERROR_CHARS] or None

    def _set_error(self, message: str | None) -> None:
        """The last error, sent with every heartbeat until a job succeeds (never a secret)."""
        self._error = message[:_MAX_ERROR_CHARS] if message else None


def _seen(value: object) -> str:
    """An id as it came, for a log line: its repr, cut to a readable length."""
    shown = repr(value)
    return shown if len(shown) <= _SEEN_CHARS else f"{shown[: _SEEN_CHARS - 3]}..."
