"""One job's run through the ports, from first frame to stored MP4 (``GenerateVideo.run``).

It holds the state of the run: the job's life cycle, the order of the phases, progress (one
report per phase change, at most one a second in between), cancellation between steps and
between decode chunks, per-stage timings, and the mapping of every failure to a contract error
code. Frames stream from the generator into the encoder (``streaming``): what is left to encode
after the last chunk is the ``encoding`` phase and ``encode_tail_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from fastwan_core.errors import ErrorCode, JobCancelled, JobFailure
from fastwan_core.job import Job
from fastwan_core.lifecycle import UNKNOWN_STAGE, JobRun, JobState, Stage
from fastwan_core.plan import GenerationPlan, plan_generation
from fastwan_core.ports import (
    CancelSignal,
    Clock,
    EncodedVideo,
    GeneratedVideo,
    ImageLoader,
    Picture,
    ResultStore,
    VideoEncoder,
    VideoGenerator,
)
from fastwan_core.results import JobResult, Metrics, ProgressUpdate, Timings
from fastwan_core.streaming import StreamedEncoding
from fastwan_core.values import WorkerInfo

__all__ = ["Execution"]

log = logging.getLogger("fastwan_core.usecase")


class _UseCase(Protocol):
    """What a run needs of the use case that starts it (``GenerateVideo``): its ports and its
    two helpers, the progress report that never raises and the metrics that say who ran it."""

    images: ImageLoader
    generator: VideoGenerator
    encoder: VideoEncoder
    store: ResultStore
    clock: Clock
    worker: WorkerInfo
    progress_interval_s: float

    def _report(self, job_id: str, update: ProgressUpdate) -> None: ...

    def _metrics(self, **values: Any) -> Metrics: ...


class Execution:
    """The state of one job's run: the entity, the timings and the throttle."""

    def __init__(self, usecase: _UseCase, job: Job, cancel: CancelSignal) -> None:
        self.usecase = usecase
        self.job = job
        self.cancel = cancel
        self.clock = usecase.clock
        self.entity = JobRun(job.musetalk_job_id)
        self.timings: dict[str, float] = {}
        self.plan: GenerationPlan = plan_generation(job)
        self.started = self.clock.now()
        self.last_report = float("-inf")
        self.generated: GeneratedVideo | None = None
        self.encoded: EncodedVideo | None = None

    def run(self) -> JobResult:
        self.entity.start()
        try:
            url = self._pipeline()
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
            phase = self.entity.phase.value if self.entity.phase else "start"
            return self._end(
                JobState.FAILED,
                ErrorCode.INTERNAL_ERROR,
                f"internal error during {phase}: {type(error).__name__}",
            )
        self.entity.succeed()
        return JobResult(
            status=JobState.SUCCEEDED,
            job_id=self.job.musetalk_job_id,
            output_url=url,
            metrics=self._metrics(),
        )

    def _pipeline(self) -> str:
        usecase = self.usecase
        image: Picture | None = None
        if (source := self.job.image_source) is not None:
            self._enter(Stage.DOWNLOAD)
            with self._timed(Stage.DOWNLOAD):
                image = usecase.images.load(source)
        self._check_cancelled()
        self._enter(Stage.TEXT_ENCODE)
        self.encoded = self._generate_and_encode(image)
        self._check_cancelled()  # a cancelled job uploads nothing
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
        events = _Events(self)
        try:
            try:
                self.generated = usecase.generator.generate(plan, image, events, encoding)
            finally:
                events.close()
            self._check_cancelled()
            self._enter(Stage.ENCODE)
            tail_started = self.clock.now()
            encoded = encoding.finish(self.generated.frames)
        except BaseException:
            encoding.abort()
            raise
        finished = self.clock.now()
        self.record("encode_tail_s", finished - tail_started)
        started = encoding.started_at if encoding.started_at is not None else tail_started
        self.record(
            Stage.ENCODE.timing, encoded.encoding_s if encoded.encoding_s is not None else finished - started
        )
        return encoded

    # -- progress -------------------------------------------------------------------------

    def _enter(self, stage: Stage) -> None:
        """Move the job on; a new phase is always reported, a new stage within one is not."""
        phase = self.entity.phase
        self.entity.enter(stage)
        self._report(force=stage.phase is not phase)

    def advance(self, fraction: float, step: int | None = None, total: int | None = None) -> None:
        self.entity.advance(fraction)
        self._report(force=False, step=step, total=total)

    def _report(self, *, force: bool, step: int | None = None, total: int | None = None) -> None:
        now = self.clock.now()
        if not force and now - self.last_report < self.usecase.progress_interval_s:
            return
        self.last_report = now
        update = ProgressUpdate(
            status=JobState.RUNNING,
            phase=self.entity.phase,
            progress=round(self.entity.progress, 4),
            step=step,
            total_steps=total,
            worker_id=self.usecase.worker.worker_id,
        )
        self.usecase._report(self.job.musetalk_job_id, update)

    def _check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise JobCancelled

    # -- timings and the end --------------------------------------------------------------

    @contextmanager
    def _timed(self, stage: Stage) -> Iterator[None]:
        start = self.clock.now()
        try:
            yield
        finally:
            self.record(stage.timing, self.clock.now() - start)

    def record(self, name: str, seconds: float) -> None:
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
            self.entity.cancel()
        else:
            self.entity.fail()
        return JobResult.failure(
            code,
            message,
            job_id=self.job.musetalk_job_id,
            retryable=retryable,
            metrics=self._metrics(),
            stage=self.entity.stage.failure_stage if self.entity.stage else UNKNOWN_STAGE,
            fatal=fatal,
        )

    def _metrics(self) -> Metrics:
        total = self.clock.now() - self.started
        timings = Timings(
            **{name: round(value, 4) for name, value in self.timings.items()}, total_s=round(total, 4)
        )
        encoded, plan, generated = self.encoded, self.plan, self.generated
        return self.usecase._metrics(
            duration_sec=round(total, 4),
            peak_vram_gb=round(self.generated.peak_vram_gb, 3) if self.generated else None,
            fps=round(plan.num_frames / total, 4) if self.generated and total > 0 else None,
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


class _Events:
    """The generator's view of the job: stages are timed, steps advance progress."""

    def __init__(self, execution: Execution) -> None:
        self.execution = execution
        self.current: Stage | None = None
        self.since = 0.0

    def stage(self, stage: Stage) -> None:
        self.close()
        self.current, self.since = stage, self.execution.clock.now()
        if stage is not self.execution.entity.stage:  # the use case entered text encoding itself
            self.execution._enter(stage)

    def step(self, index: int, total: int) -> None:
        self.execution.advance(index / total, step=index, total=total)

    def check_cancelled(self) -> None:
        self.execution._check_cancelled()

    def close(self) -> None:
        if self.current is not None:
            self.execution.record(self.current.timing, self.execution.clock.now() - self.since)
            self.current = None
