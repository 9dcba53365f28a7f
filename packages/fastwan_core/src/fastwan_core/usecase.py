"""The generate-video use case: one job through the ports, from first frame to stored MP4.

:class:`GenerateVideo` runs a valid job (:meth:`~GenerateVideo.run`) and answers one that
breaks the rules (:meth:`~GenerateVideo.refuse`); it does no I/O itself. Each run is a
:class:`_Run` of its own, which holds what happens around the model: the job's stages in
order, progress (one report per phase change, at most one a second in between), cancellation
between steps and between decode chunks, per-stage timings, and the mapping of every failure
to a contract error code. Frames stream from the generator into the encoder (``streaming``):
what is left to encode after the last chunk is the ``encode`` stage and ``encode_tail_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from fastwan_core.cancellation import NEVER_CANCELLED
from fastwan_core.errors import ErrorCode, JobCancelled, JobFailure, JobValidationError
from fastwan_core.job import Job
from fastwan_core.lifecycle import UNKNOWN_STAGE, JobLifecycle, JobState, Stage
from fastwan_core.plan import GenerationPlan, plan_generation
from fastwan_core.ports import (
    CancelSignal,
    Clock,
    EncodedVideo,
    GeneratedVideo,
    ImageLoader,
    Picture,
    ProgressReporter,
    ResultStore,
    VideoEncoder,
    VideoGenerator,
)
from fastwan_core.results import JobResult, Metrics, ProgressUpdate, Timings
from fastwan_core.streaming import StreamedEncoding
from fastwan_core.values import WorkerInfo

__all__ = ["GenerateVideo"]

log = logging.getLogger(__name__)


@attrs.define
class GenerateVideo:
    """Runs jobs through the ports. One instance per worker; one job at a time per instance.

    Attributes:
        progress_interval_s: the least time between two progress reports of the same phase.
    """

    images: ImageLoader
    generator: VideoGenerator
    encoder: VideoEncoder
    store: ResultStore
    progress: ProgressReporter
    clock: Clock
    worker: WorkerInfo = attrs.field(factory=WorkerInfo)
    progress_interval_s: float = 1.0

    def refuse(self, error: JobValidationError) -> JobResult:
        """The answer to a job whose body breaks the rules, without running anything: a failed
        ``invalid_input`` result (not retryable) with the id it could read, and its final progress
        call when there is one. Every entrypoint answers a bad job through this."""
        result = JobResult.failure(
            ErrorCode.INVALID_INPUT,
            str(error),
            job_id=error.job_id,
            metrics=self.metrics_for(0.0),
        )
        if error.job_id is not None:
            _report(self.progress, error.job_id, result.progress_update(self.worker.worker_id))
        return result

    def run(self, job: Job, cancel: CancelSignal = NEVER_CANCELLED) -> JobResult:
        """Run one valid job to its end. Never raises: every failure is a failed result."""
        result = _Run(self, job, cancel).result()
        _report(self.progress, job.musetalk_job_id, result.progress_update(self.worker.worker_id))
        return result

    def metrics_for(self, duration_sec: float, **values: Any) -> Metrics:
        """Metrics with who ran the job filled in: a run's, or those of a job that ends without a
        result of the use case's own (the worker gave up waiting for it, or its run raised), who
        ran it and for how long, no more."""
        return Metrics(
            duration_sec=round(max(0.0, duration_sec), 4),
            model_id=self.generator.model_id,
            gpu_name=self.generator.device_name,
            gpu_class=self.worker.gpu_class or self.generator.device_name,
            worker_id=self.worker.worker_id,
            worker_version=self.worker.worker_version,
            **values,
        )


def _report(progress: ProgressReporter, job_id: str, update: ProgressUpdate) -> None:
    try:
        progress.report(job_id, update)
    except Exception:  # the port promises not to raise; a job never fails for progress
        log.warning("progress report failed for job %s", job_id, exc_info=True)


class _Run:
    """One job's way through the ports: its life cycle, timings and progress throttle.

    It is also the generator's view of the job (the ``GenerationEvents`` port): the generator's
    stages are timed, its steps advance progress, and it asks here whether to stop.
    """

    def __init__(self, usecase: GenerateVideo, job: Job, cancel: CancelSignal) -> None:
        self.usecase = usecase
        self.job = job
        self.cancel = cancel
        self.clock = usecase.clock
        self.lifecycle = JobLifecycle(job.musetalk_job_id)
        self.timings: dict[str, float] = {}
        self.plan: GenerationPlan = plan_generation(job)
        self.started = self.clock.now()
        self.last_report = float("-inf")
        self.generated: GeneratedVideo | None = None
        self.encoded: EncodedVideo | None = None
        self.timed_stage: Stage | None = None  # the generator's stage being timed, and since when
        self.stage_started = 0.0

    def result(self) -> JobResult:
        self.lifecycle.start()
        try:
            url = self._through_the_ports()
        except JobCancelled:
            code, message = self.cancel.code, self.cancel.message
            if code is ErrorCode.CANCELLED:
                return self._end(JobState.CANCELLED, code, message)
            log.warning("job %s stopped: %s (%s)", self.job.musetalk_job_id, message, code.value)
            return self._end(JobState.FAILED, code, message)
        except JobFailure as failure:
            if failure.code is ErrorCode.CANCELLED:
                return self._end(JobState.CANCELLED, ErrorCode.CANCELLED, failure.message)
            log.warning(
                "job %s failed: %s (%s)", self.job.musetalk_job_id, failure.message, failure.code.value
            )
            return self._end(
                JobState.FAILED,
                failure.code,
                failure.message,
                retryable=failure.retryable,
                fatal=failure.fatal,
            )
        except Exception as error:  # an adapter's bug must never take the worker down
            log.exception("job %s: unexpected error", self.job.musetalk_job_id)
            phase = self.lifecycle.phase.value if self.lifecycle.phase else "start"
            return self._end(
                JobState.FAILED,
                ErrorCode.INTERNAL_ERROR,
                f"internal error during {phase}: {type(error).__name__}",
            )
        self.lifecycle.succeed()
        return JobResult(
            status=JobState.SUCCEEDED,
            job_id=self.job.musetalk_job_id,
            output_url=url,
            metrics=self._metrics(),
        )

    def _through_the_ports(self) -> str:
        usecase = self.usecase
        image: Picture | None = None
        if (source := self.job.image_source) is not None:
            self._enter(Stage.DOWNLOAD)
            with self._timed(Stage.DOWNLOAD):
                image = usecase.images.load(source)
        self.check_cancelled()
        self._enter(Stage.TEXT_ENCODE)
        self.encoded = self._generate_and_encode(image)
        self.check_cancelled()  # a cancelled job uploads nothing
        self._enter(Stage.UPLOAD)
        metadata = {
            "job_id": self.job.musetalk_job_id,
            "seed": str(self.job.seed),
            "model": usecase.generator.model_id,
        }
        with self._timed(Stage.UPLOAD):
            return usecase.store.put(self.job.output_name, self.encoded, metadata)

    def _generate_and_encode(self, image: Picture | None) -> EncodedVideo:
        """Generate with the frames streaming into the encoder; abort it if anything stops us."""
        usecase, plan = self.usecase, self.plan
        encoding = StreamedEncoding(usecase.encoder, plan.output_size, plan.fps, self.clock, cover=plan.cover)
        try:
            try:
                self.generated = usecase.generator.generate(plan, image, self, encoding)
            finally:
                self._end_stage()
            self.check_cancelled()
            self._enter(Stage.ENCODE)
            tail_started = self.clock.now()
            encoded = encoding.finish()
        except BaseException:
            encoding.abort()
            raise
        finished = self.clock.now()
        self._record("encode_tail_s", finished - tail_started)
        started = encoding.started_at if encoding.started_at is not None else tail_started
        self._record(
            Stage.ENCODE.timing, encoded.encoding_s if encoded.encoding_s is not None else finished - started
        )
        return encoded

    # -- the generator's events -----------------------------------------------------------

    def stage(self, stage: Stage) -> None:
        self._end_stage()
        self.timed_stage, self.stage_started = stage, self.clock.now()
        if stage is not self.lifecycle.stage:  # text encoding was entered before the generator ran
            self._enter(stage)

    def step(self, index: int, total: int) -> None:
        self.lifecycle.advance(index / total)
        self._report(force=False, step=index, total=total)

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise JobCancelled

    def _end_stage(self) -> None:
        if self.timed_stage is not None:
            self._record(self.timed_stage.timing, self.clock.now() - self.stage_started)
            self.timed_stage = None

    # -- progress -------------------------------------------------------------------------

    def _enter(self, stage: Stage) -> None:
        """Move the job on; a new phase is always reported, a new stage within one is not."""
        phase = self.lifecycle.phase
        self.lifecycle.enter(stage)
        self._report(force=stage.phase is not phase)

    def _report(self, *, force: bool, step: int | None = None, total: int | None = None) -> None:
        now = self.clock.now()
        if not force and now - self.last_report < self.usecase.progress_interval_s:
            return
        self.last_report = now
        update = ProgressUpdate(
            status=JobState.RUNNING,
            phase=self.lifecycle.phase,
            progress=round(self.lifecycle.progress, 4),
            step=step,
            total_steps=total,
            worker_id=self.usecase.worker.worker_id,
        )
        _report(self.usecase.progress, self.job.musetalk_job_id, update)

    # -- timings and the end --------------------------------------------------------------

    @contextmanager
    def _timed(self, stage: Stage) -> Iterator[None]:
        start = self.clock.now()
        try:
            yield
        finally:
            self._record(stage.timing, self.clock.now() - start)

    def _record(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + seconds

    def _end(
        self,
        state: JobState,
        code: ErrorCode,
        message: str,
        *,
        retryable: bool | None = None,
        fatal: bool = False,
    ) -> JobResult:
        if state is JobState.CANCELLED:
            self.lifecycle.cancel()
        else:
            self.lifecycle.fail()
        return JobResult.failure(
            code,
            message,
            job_id=self.job.musetalk_job_id,
            retryable=retryable,
            metrics=self._metrics(),
            stage=self.lifecycle.stage.failure_stage if self.lifecycle.stage else UNKNOWN_STAGE,
            fatal=fatal,
        )

    def _metrics(self) -> Metrics:
        total = self.clock.now() - self.started
        timings = Timings(
            **{name: round(value, 4) for name, value in self.timings.items()}, total_s=round(total, 4)
        )
        encoded, plan, generated = self.encoded, self.plan, self.generated
        return self.usecase.metrics_for(
            total,
            peak_vram_gb=round(generated.peak_vram_gb, 3) if generated else None,
            fps=round(plan.num_frames / total, 4) if generated and total > 0 else None,
            timings=timings,
            steps=plan.steps,
            seed=plan.seed,
            generated_size=plan.generated_size,
            output_size=encoded.size if encoded else plan.output_size,
            num_frames=plan.num_frames,
            video_fps=plan.fps,
            size_bytes=encoded.size_bytes if encoded else None,
            sha1=encoded.sha1 if encoded else None,
            attention=generated.attention if generated else None,
            vsa_sparsity=generated.vsa_sparsity if generated else None,
            vae_decoder=generated.vae_decoder if generated else None,
            encoder=encoded.encoder if encoded else None,
            prompt_cache=generated.prompt_cache if generated else None,
        )
