"""Whether this worker can take a job: the model's state, seen by the probes and the job route.

``loading -> ready``, then ``stopping`` on SIGTERM; ``failed`` from anywhere when the model
could not be loaded or the GPU became unusable. A failed worker stays failed: it exits soon
after (see :mod:`queue_worker.process`), and the platform starts a fresh one.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from fastwan_core import GenerateVideo

__all__ = ["Readiness", "WorkerState"]

_MAX_REASON_CHARS: Final = 500


class WorkerState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


@attrs.define
class Readiness:
    """The worker's state, read by the job route and the probes (all on the event loop).

    Attributes:
        reason: why the worker is failed (or stopping), a human-readable line with no secret.
    """

    state: WorkerState = WorkerState.LOADING
    reason: str | None = None
    _usecase: GenerateVideo | None = None

    def loaded(self, usecase: GenerateVideo) -> bool:
        """The model is ready; ``False`` if the worker stopped or failed meanwhile."""
        if self.state is not WorkerState.LOADING:
            return False
        self._usecase, self.state = usecase, WorkerState.READY
        return True

    def fail(self, reason: str) -> None:
        self.state = WorkerState.FAILED
        self.reason = reason[:_MAX_REASON_CHARS]

    def stop(self, reason: str = "the worker is shutting down") -> None:
        if self.state is not WorkerState.FAILED:
            self.state, self.reason = WorkerState.STOPPING, reason

    @property
    def is_ready(self) -> bool:
        return self.state is WorkerState.READY

    @property
    def usecase(self) -> GenerateVideo:
        """The loaded use case; only asked for once :attr:`is_ready` said so."""
        if self._usecase is None:
            raise RuntimeError(f"no model loaded: the worker is {self.state.value}")
        return self._usecase

    def describe(self) -> dict[str, str]:
        """The probes' body: the state, and the reason when there is one."""
        body = {"state": self.state.value}
        if self.reason is not None:
            body["reason"] = self.reason
        return body
