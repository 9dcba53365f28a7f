"""The generate-video use case: one job through the ports, from first frame to stored MP4.

It owns what happens around the model (``execution``: the phases, progress, cancellation,
timings and the mapping of every failure to a contract error code) and the answer to a job
that breaks the rules (:meth:`GenerateVideo.refuse`). It does no I/O itself.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from fastwan_core.cancellation import NEVER_CANCELLED
from fastwan_core.errors import ErrorCode, JobValidationError
from fastwan_core.execution import Execution
from fastwan_core.job import Job
from fastwan_core.ports import (
    CancelSignal,
    Clock,
    ImageLoader,
    ProgressReporter,
    ResultStore,
    VideoEncoder,
    VideoGenerator,
)
from fastwan_core.results import JobResult, Metrics, ProgressUpdate
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
            metrics=self._metrics(duration_sec=0.0),
        )
        if error.job_id is not None:
            self._report(error.job_id, result.progress_update(self.worker.worker_id))
        return result

    def run(self, job: Job, cancel: CancelSignal = NEVER_CANCELLED) -> JobResult:
        """Run one valid job to its end. Never raises: every failure is a failed result."""
        execution = Execution(self, job, cancel)
        result = execution.run()
        self._report(job.musetalk_job_id, result.progress_update(self.worker.worker_id))
        return result

    def _report(self, job_id: str, update: ProgressUpdate) -> None:
        try:
            self.progress.report(job_id, update)
        except Exception:  # the port promises not to raise; a job never fails for progress
            log.warning("progress report failed for job %s", job_id, exc_info=True)

    def _metrics(self, **values: Any) -> Metrics:
        """Metrics with who ran the job filled in."""
        return Metrics(
            model_id=self.generator.model_id,
            gpu_name=self.generator.device_name,
            gpu_class=self.worker.gpu_class or self.generator.device_name,
            worker_id=self.worker.worker_id,
            worker_version=self.worker.worker_version,
            **values,
        )

    def metrics_for(self, duration_sec: float) -> Metrics:
        """The metrics of a job that ends without a result of the use case's own (the worker
        gave up waiting for it, or its run raised): who ran it and for how long, no more."""
        return self._metrics(duration_sec=round(max(0.0, duration_sec), 4))
