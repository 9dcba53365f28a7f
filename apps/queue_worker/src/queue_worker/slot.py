"""The one job slot: a job at a time, run on the job thread, stopped when its caller leaves or
the worker stops.

The slot admits a job only when the model is ready and no other job holds it (Salad's binary
sends one job at a time; a second one is a retry or a mistake and gets 429). The job runs on the
job thread (``fastwan_adapters.job_runner``); the slot is freed when the job really ends there,
not when the request does, so that a job whose caller left can never overlap the next one on
the GPU. Everything else happens on the event loop uvicorn runs.

A job is stopped at its next step for one of two reasons, and the core reports it by the reason
(``fastwan_core.Cancellation``): its caller hung up (``cancelled``, nobody is listening), or the
worker is shutting down and ``SHUTDOWN_GRACE_S`` ran out (``worker_shutdown``, retryable, so that
Salad and the orchestrator run it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import attrs

from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.job_runner import JobRunner
from fastwan_adapters.logs import bind_job
from fastwan_adapters.salad import DeletionCost
from fastwan_core import Cancellation, ErrorCode, Job, JobResult, JobState, JobValidationError, parse_job
from queue_worker.body import InvalidBody, decode_job
from queue_worker.metrics import QueueMetrics
from queue_worker.process import ProcessExit
from queue_worker.readiness import Readiness, WorkerState
from queue_worker.status_codes import BUSY, NOT_READY

__all__ = ["JobSlot", "Rejection"]

log = logging.getLogger("queue_worker.runner")  # the logger of these lines, as before the rename


@attrs.frozen
class Rejection:
    """A job refused without running it: the answer's status and body."""

    status: int
    result: JobResult
    reason: str

    @classmethod
    def of(cls, status: int, reason: str, message: str, code: ErrorCode | None = None) -> Rejection:
        result = JobResult(status=JobState.FAILED, error=message, error_code=code, retryable=True)
        return cls(status, result, reason)


@attrs.define
class JobSlot:
    """Admits, runs and stops jobs; used on the event loop (but :meth:`begin_shutdown`).

    Attributes:
        jobs: the job thread (the model's loader runs there too).
        fatal_exit_delay_s: how long a worker whose GPU became unusable keeps answering
            probes with the reason before it exits.
        deletion_cost: on SaladCloud, told when a job starts and ends (never waited for).
    """

    jobs: JobRunner
    readiness: Readiness
    metrics: QueueMetrics
    process_exit: ProcessExit
    fatal_exit_delay_s: float = 5.0
    deletion_cost: DeletionCost | None = None
    _taken: bool = False
    _job_id: str | None = None
    _cancel: Cancellation | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop_timer: asyncio.TimerHandle | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the app runs on (where a shutdown signal is handed)."""
        self._loop = loop

    # -- admission ------------------------------------------------------------------------

    def admit(self) -> Rejection | None:
        """Take the slot for a new job, or say why not.

        Called before the body is read, so that a refused job costs no memory and no wait. A
        caller admitted must call :meth:`run`, or :meth:`withdraw` if it has no body to run.
        """
        state = self.readiness.state
        if state is WorkerState.LOADING:
            return self._reject(NOT_READY, "not_ready", "the model is still loading; try again later")
        if state is WorkerState.STOPPING:
            return self._reject(
                NOT_READY, "stopping", "the worker is shutting down", ErrorCode.WORKER_SHUTDOWN
            )
        if state is WorkerState.FAILED:
            return self._reject(NOT_READY, "failed", f"the worker cannot run jobs: {self.readiness.reason}")
        if self._taken:
            job = f"job {self._job_id}" if self._job_id else "another job"
            return self._reject(BUSY, "busy", f"the worker is busy with {job}; it runs one job at a time")
        self._taken = True
        return None

    def withdraw(self) -> None:
        """Give back the slot of an admitted job that will not run (its body never arrived whole)."""
        self._taken = False

    def _reject(self, status: int, reason: str, message: str, code: ErrorCode | None = None) -> Rejection:
        self.metrics.job_rejected(reason)
        return Rejection.of(status, reason, message, code)

    # -- running --------------------------------------------------------------------------

    async def run(self, body: bytes, *, caller_gone: Callable[[], Awaitable[None]]) -> JobResult:
        """Run an admitted job from its raw body; stop it at its next step if ``caller_gone`` returns.

        Decoding happens on the job thread too: a 30 MB body must not stall ``/health``.

        Args:
            caller_gone: returns when the client disconnects.
        """
        usecase = self.readiness.usecase
        cancel = self._cancel = Cancellation()
        self.metrics.busy.set(1)
        if self.deletion_cost is not None:
            self.deletion_cost.busy()
        loop = asyncio.get_running_loop()

        def on_the_loop(callback: Callable[..., object], *args: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed first: nobody is waiting
                loop.call_soon_threadsafe(callback, *args)

        def work() -> JobResult:
            try:
                try:
                    payload = decode_job(body)
                except InvalidBody as error:
                    return JobResult.failure(ErrorCode.INVALID_INPUT, str(error))
                try:
                    parsed: Job | JobValidationError = parse_job(payload)
                except JobValidationError as error:
                    parsed = error
                job_id = parsed.musetalk_job_id if isinstance(parsed, Job) else parsed.job_id
                on_the_loop(setattr, self, "_job_id", job_id)
                with bind_job(job_id):
                    log.info("job started")
                    if isinstance(parsed, Job):
                        return usecase.run(parsed, cancel)
                    return usecase.refuse(parsed)
            finally:
                on_the_loop(self._release)

        job = asyncio.ensure_future(self.jobs.run(work))
        watcher = asyncio.create_task(self._cancel_when_gone(caller_gone, cancel))
        try:
            result = await job
        except asyncio.CancelledError:
            # The server gave up waiting (its graceful-shutdown timeout): stop the job too.
            cancel.cancel(ErrorCode.WORKER_SHUTDOWN)
            raise
        except Exception as error:  # run and refuse never raise; if they ever do, say so
            log.exception("the job raised")
            result = JobResult.failure(ErrorCode.INTERNAL_ERROR, f"internal error: {type(error).__name__}")
        finally:
            watcher.cancel()
        self.metrics.job_finished(result)
        if result.fatal:
            self._fatal(result)
        return result

    async def _cancel_when_gone(
        self, caller_gone: Callable[[], Awaitable[None]], cancel: Cancellation
    ) -> None:
        try:
            await caller_gone()
        except Exception:  # the transport broke some other way; the answer's send will tell
            log.debug("watching for the caller's disconnect failed", exc_info=True)
            return
        if cancel.cancel(ErrorCode.CANCELLED, "the caller disconnected before the job finished"):
            # This task runs in the request's log context, bound before the job's id was known.
            with bind_job(self._job_id):
                log.warning(
                    "job %s: the caller disconnected; stopping the job at its next step", self._job_id
                )

    def _release(self) -> None:
        self._cancel, self._job_id = None, None
        self.metrics.busy.set(0)
        if self.deletion_cost is not None:
            self.deletion_cost.idle()
        self._taken = False

    def _fatal(self, result: JobResult) -> None:
        reason = f"the GPU is unusable after job {result.job_id}: {result.error}"
        self.readiness.fail(reason)
        self.metrics.ready.set(0)
        self.process_exit.request(ExitCode.RESTART, reason, after_s=self.fatal_exit_delay_s)

    # -- what the probes and shutdown need ------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._taken

    @property
    def job_id(self) -> str | None:
        return self._job_id

    def caller_left(self, job_id: str) -> bool:
        """Whether ``job_id`` is the job in hand and its caller has hung up (``progress.py``)."""
        cancel = self._cancel
        return (
            job_id == self._job_id
            and cancel is not None
            and cancel.is_set()
            and cancel.code is ErrorCode.CANCELLED
        )

    def begin_shutdown(self, grace_s: float) -> None:
        """Take no more jobs; stop the job in hand if it still runs ``grace_s`` seconds from now.

        Safe to call from a signal handler or another thread: the rest happens on the loop.
        """
        loop = self._loop or asyncio.get_running_loop()
        loop.call_soon_threadsafe(self._shut_down, grace_s)

    def _shut_down(self, grace_s: float) -> None:
        self.readiness.stop()
        self.metrics.ready.set(0)
        if self._stop_timer is not None:
            return
        self._stop_timer = asyncio.get_running_loop().call_later(grace_s, self._stop_for_shutdown)
        if self.busy:
            log.info("shutting down: job %s may run for %.1f s more", self._job_id, grace_s)

    def _stop_for_shutdown(self) -> None:
        cancel = self._cancel
        if cancel is not None and cancel.cancel(ErrorCode.WORKER_SHUTDOWN):
            log.warning("job %s: SHUTDOWN_GRACE_S ran out; stopping it at its next step", self._job_id)
