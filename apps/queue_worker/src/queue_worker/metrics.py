"""Prometheus metrics of one queue worker, on a registry of its own.

A registry per app (not prometheus_client's global one) so that tests can build many apps in
one process, and so that ``/metrics`` shows exactly this worker's series.
"""

from __future__ import annotations

import attrs
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from fastwan_core import JobResult, Stage, Timings

__all__ = ["CONTENT_TYPE_LATEST", "QueueMetrics"]

#: Seconds; a 5 s clip takes from about 10 s (H100) to a few minutes (small GPUs).
_JOB_BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600)
_PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)


@attrs.define
class QueueMetrics:
    """The worker's series; the methods say what happened, in the worker's own words."""

    registry: CollectorRegistry = attrs.field(factory=lambda: CollectorRegistry(auto_describe=True))
    jobs: Counter = attrs.field(init=False)
    job_seconds: Histogram = attrs.field(init=False)
    phase_seconds: Histogram = attrs.field(init=False)
    rejected: Counter = attrs.field(init=False)
    busy: Gauge = attrs.field(init=False)
    ready: Gauge = attrs.field(init=False)
    model_load_seconds: Gauge = attrs.field(init=False)
    warmup_seconds: Gauge = attrs.field(init=False)
    startup_seconds: Gauge = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        r = self.registry
        self.jobs = Counter(
            "fastwan_jobs", "Jobs answered, by outcome and error code", ["outcome", "error_code"], registry=r
        )
        self.job_seconds = Histogram(
            "fastwan_job_duration_seconds", "Whole-job time", ["outcome"], buckets=_JOB_BUCKETS, registry=r
        )
        self.phase_seconds = Histogram(
            "fastwan_phase_duration_seconds",
            "Time per phase of a job",
            ["phase"],
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "fastwan_requests_rejected",
            "Jobs refused without running them, by reason",
            ["reason"],
            registry=r,
        )
        self.busy = Gauge("fastwan_busy", "1 while a job runs", registry=r)
        self.ready = Gauge("fastwan_ready", "1 once the model is loaded and warmed up", registry=r)
        self.model_load_seconds = Gauge("fastwan_model_load_seconds", "Time to load the model", registry=r)
        self.warmup_seconds = Gauge(
            "fastwan_model_warmup_seconds", "Time of the warm-up generation", registry=r
        )
        self.startup_seconds = Gauge(
            "fastwan_startup_seconds", "From process start to ready: model, warm-up and storage", registry=r
        )

    def job_finished(self, result: JobResult) -> None:
        outcome = result.status.value
        self.jobs.labels(
            outcome=outcome, error_code=result.error_code.value if result.error_code else ""
        ).inc()
        if result.metrics is None:
            return
        self.job_seconds.labels(outcome=outcome).observe(result.metrics.duration_sec)
        self._observe_phases(result.metrics.timings)

    def job_rejected(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()

    def model_loaded(self, *, startup_s: float, load_s: float | None, warmup_s: float | None) -> None:
        self.startup_seconds.set(startup_s)
        if load_s is not None:
            self.model_load_seconds.set(load_s)
        if warmup_s is not None:
            self.warmup_seconds.set(warmup_s)

    def render(self) -> bytes:
        """The text exposition format, for ``GET /metrics``."""
        return generate_latest(self.registry)

    def _observe_phases(self, timings: Timings) -> None:
        """Each stage's seconds under its own name (the ``phase`` label is a stage's value)."""
        for stage in Stage:
            if (seconds := timings.of(stage)) is not None:
                self.phase_seconds.labels(phase=stage.value).observe(seconds)
