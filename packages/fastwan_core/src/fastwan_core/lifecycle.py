"""The job's life: states, phases and the entity that owns the transitions between them.

A run moves ``pending -> running -> succeeded | failed | cancelled``; while running it passes
through the phases in order (a text-to-video job skips ``downloading``). Progress is one
number in 0..1 that only grows: each phase owns a slice of it.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

__all__ = ["IllegalTransition", "JobRun", "JobState", "Phase"]


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Phase(enum.Enum):
    """The contract's phases, in the order a job passes through them."""

    DOWNLOADING = "downloading"
    INFERENCE = "inference"
    DECODING = "decoding"
    ENCODING = "encoding"
    UPLOADING = "uploading"

    @property
    def span(self) -> tuple[float, float]:
        """The slice of overall progress this phase covers."""
        return _SPANS[self]


_ORDER: Final = list(Phase)
_SPANS: Final = {
    Phase.DOWNLOADING: (0.0, 0.05),
    Phase.INFERENCE: (0.05, 0.8),
    Phase.DECODING: (0.8, 0.9),
    Phase.ENCODING: (0.9, 0.96),
    Phase.UPLOADING: (0.96, 1.0),
}


class IllegalTransition(RuntimeError):
    """A transition the life cycle does not allow: a programming error, never a job's fault."""


@attrs.define
class JobRun:
    """The mutable record of one job's life. Every change goes through a method that checks it.

    Attributes:
        state: where the run stands.
        phase: the current phase while running, the last one reached afterwards.
        progress: overall progress, 0..1, monotonic; 1.0 only on success.
    """

    job_id: str
    state: JobState = JobState.PENDING
    phase: Phase | None = None
    progress: float = 0.0

    def start(self) -> None:
        self._require(JobState.PENDING, "start")
        self.state = JobState.RUNNING

    def enter(self, phase: Phase) -> None:
        """Move forward to ``phase``; phases may be skipped, never revisited."""
        self._require(JobState.RUNNING, f"enter {phase.value}")
        if self.phase is not None and _ORDER.index(phase) <= _ORDER.index(self.phase):
            raise IllegalTransition(f"job {self.job_id}: cannot go from {self.phase.value} to {phase.value}")
        self.phase = phase
        self._raise_progress(phase.span[0])

    def advance(self, fraction: float) -> None:
        """Record ``fraction`` (0..1) of the current phase done; progress never goes back."""
        self._require(JobState.RUNNING, "advance")
        if self.phase is None:
            raise IllegalTransition(f"job {self.job_id}: advance before any phase")
        low, high = self.phase.span
        self._raise_progress(low + (high - low) * min(1.0, max(0.0, fraction)))

    def succeed(self) -> None:
        self._finish(JobState.SUCCEEDED)
        self.progress = 1.0

    def fail(self) -> None:
        self._finish(JobState.FAILED)

    def cancel(self) -> None:
        self._finish(JobState.CANCELLED)

    def _finish(self, state: JobState) -> None:
        if self.state.is_terminal:
            raise IllegalTransition(
                f"job {self.job_id}: already {self.state.value}, cannot become {state.value}"
            )
        self.state = state

    def _require(self, state: JobState, action: str) -> None:
        if self.state is not state:
            raise IllegalTransition(f"job {self.job_id}: cannot {action} while {self.state.value}")

    def _raise_progress(self, value: float) -> None:
        self.progress = max(self.progress, min(value, 0.999))
