"""Prometheus metrics of the buffer worker, in a registry of its own.

The registry is private so that tests can build as many workers as they like in one process,
and so that nothing else that imports ``prometheus_client`` leaks series into this worker's
page. It is served only when ``METRICS_PORT`` is set.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fastwan_core import JobResult

__all__ = ["WorkerMetrics"]

# A 5 s FastWan clip takes seconds on an H100 and minutes on a small card.
_JOB_BUCKETS: Final = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)


class WorkerMetrics:
    """The worker's counters and gauges; every method is cheap and thread-safe."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.jobs = Counter(
            "fastwan_buffer_jobs",
            "Claimed jobs that ended, by terminal status and error code ('' on success).",
            ["status", "error_code"],
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "fastwan_buffer_job_duration_seconds",
            "Seconds from claim to terminal status, per job.",
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.leases_lost = Counter(
            "fastwan_buffer_leases_lost",
            "Jobs dropped because a status call answered 404/409.",
            registry=self.registry,
        )
        self.claims = Counter(
            "fastwan_buffer_claims",
            "Claims answered by the orchestrator, by outcome (job, empty).",
            ["outcome"],
            registry=self.registry,
        )
        self.heartbeats = Counter(
            "fastwan_buffer_heartbeats",
            "Heartbeats sent, by outcome (ok, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.busy = Gauge("fastwan_buffer_busy", "1 while a job is in hand.", registry=self.registry)
        self.ready = Gauge(
            "fastwan_buffer_ready", "1 once the model is loaded and warm.", registry=self.registry
        )

    def job_ended(self, result: JobResult, seconds: float) -> None:
        code = result.error_code.value if result.error_code is not None else ""
        self.jobs.labels(status=result.status.value, error_code=code).inc()
        self.job_seconds.observe(max(0.0, seconds))

    def heartbeat(self, *, ok: bool) -> None:
        self.heartbeats.labels(outcome="ok" if ok else "failed").inc()

    def claimed(self, *, job: bool) -> None:
        self.claims.labels(outcome="job" if job else "empty").inc()

    def serve(self, port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from outside the container
        """Serve ``/metrics`` on a daemon thread (it ends with the process)."""
        start_http_server(port, addr=address, registry=self.registry)
