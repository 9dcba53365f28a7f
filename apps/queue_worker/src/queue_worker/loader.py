"""The background start-up: load and warm up the model, connect the store, then say ready.

The server listens from the first second (so that Salad's probes get answers, not refused
connections); everything slow happens here, on the job thread, while the event loop answers. A
start-up that fails is
logged with its reason, shown on ``/health`` and ``/ready``, and ends the process non-zero a
little later, so that the platform replaces the container instead of leaving it idle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import attrs

from fastwan_adapters.config import ConfigError
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.generator.errors import StartupStopped
from fastwan_adapters.job_runner import JobRunner
from fastwan_core import GenerateVideo
from queue_worker.metrics import QueueMetrics
from queue_worker.process import ProcessExit
from queue_worker.readiness import Readiness

__all__ = ["ModelLoader"]

log = logging.getLogger(__name__)


@attrs.define
class ModelLoader:
    """Builds the use case (the slow part: model, warm-up, store) on the job thread.

    Attributes:
        build: returns the ready use case; raises if anything cannot be set up.
        jobs: the job thread.
        secrets: values scrubbed from the failure reason that ``/health`` shows.
    """

    build: Callable[[], GenerateVideo]
    jobs: JobRunner
    readiness: Readiness
    metrics: QueueMetrics
    process_exit: ProcessExit
    fatal_exit_delay_s: float = 5.0
    secrets: Sequence[str] = attrs.field(default=(), repr=False)

    async def load(self) -> None:
        """Load now; never raises (but cancelled, when the server stops first)."""
        started = time.monotonic()
        log.info("start-up: loading the model and connecting the result store")
        try:
            usecase = await self.jobs.run(self.build)
        except StartupStopped as error:  # a stop signal: nothing failed, the server is draining
            log.info("start-up stopped: %s", error)
            return
        except Exception as error:
            self._failed(error)
            return
        generator = usecase.generator
        startup_s = time.monotonic() - started
        self.metrics.model_loaded(
            startup_s=startup_s,
            load_s=_seconds(generator, "load_seconds"),
            warmup_s=_seconds(generator, "warmup_seconds"),
        )
        if self.readiness.loaded(usecase):
            self.metrics.ready.set(1)
            log.info("ready in %.1f s: model %s on %s", startup_s, generator.model_id, generator.device_name)

    def _failed(self, error: Exception) -> None:
        reason = self._scrub(
            str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
        )
        # A configuration error is the operator's to fix and says so; anything else gets a trace.
        log.error("start-up failed: %s", reason, exc_info=not isinstance(error, ConfigError))
        self.readiness.fail(f"start-up failed: {reason}")
        code = ExitCode.for_startup_failure(error)
        self.process_exit.request(code, reason, after_s=self.fatal_exit_delay_s)

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _seconds(generator: object, name: str) -> float | None:
    """The real generator reports its load and warm-up times; fakes need not."""
    value = getattr(generator, name, None)
    return float(value) if isinstance(value, int | float) else None
