"""The job's life: its states, where it is (:class:`Stage`), and the entity that owns the moves.

A run moves ``pending -> running -> succeeded | failed | cancelled``; while running it passes
through the stages in order (a text-to-video job skips ``download``). Progress is one number
in 0..1 that only grows: each stage owns a slice of it.

:class:`Stage` is the one name for where a job is. Every other name for it is derived from it
in one table, here: the contract's progress ``phase`` (:class:`Phase`, coarser), the
``timings`` field that says how long it took, and the sibling worker's (MuseTalk's) words, its
``stage_times`` key and a failure's ``stage``; the stage's own value is the metrics' label.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

__all__ = [
    "UNKNOWN_STAGE",
    "VALIDATION_STAGE",
    "IllegalTransition",
    "JobLifecycle",
    "JobState",
    "Phase",
    "Stage",
]


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
    """The contract's progress ``phase``: where a running job is, in the orchestrator's words.

    Derived from the job's :class:`Stage` (``Stage.phase``): ``inference`` covers the text
    encoding and the denoising steps.
    """

    DOWNLOADING = "downloading"
    INFERENCE = "inference"
    DECODING = "decoding"
    ENCODING = "encoding"
    UPLOADING = "uploading"


class Stage(enum.Enum):
    """Where a running job is, in the order it passes; the value is the metrics' ``phase`` label.

    The generator reports its own three (``text_encode``, ``denoise``, ``decode``); the use case
    the others. ``encode`` is what is left to encode once the last frame was decoded (the
    encoder works while the decoder decodes: its own time is ``timings.encode_s``).

    Attributes:
        phase: the contract's progress ``phase`` while the job is here.
        timing: the ``Timings`` field with the seconds this stage took.
        stage_times_key: the sibling's ``stage_times`` key for those seconds (its
            ``inference`` is the denoising).
        failure_stage: a failure's ``stage`` when the job failed here: the sibling's word for
            the phase.
        span: the slice of overall progress this stage covers (text encoding takes a tenth of
            the inference phase's).
    """

    _value_: str
    phase: Phase
    timing: str
    stage_times_key: str
    failure_stage: str
    span: tuple[float, float]

    def __new__(  # noqa: PLR0917 - a row of the table below, column by column
        cls,
        value: str,
        phase: Phase,
        timing: str,
        stage_times_key: str,
        failure_stage: str,
        span: tuple[float, float],
    ) -> Stage:
        stage = object.__new__(cls)
        stage._value_, stage.phase, stage.timing = value, phase, timing
        stage.stage_times_key, stage.failure_stage, stage.span = stage_times_key, failure_stage, span
        return stage

    # The one table of every name of each stage:
    #   value          phase              timing           stage_times    failure      span
    DOWNLOAD = "download", Phase.DOWNLOADING, "download_s", "download", "download", (0.0, 0.05)
    TEXT_ENCODE = "text_encode", Phase.INFERENCE, "text_encode_s", "text_encode", "inference", (0.05, 0.125)
    DENOISE = "denoise", Phase.INFERENCE, "denoise_s", "inference", "inference", (0.125, 0.8)
    DECODE = "decode", Phase.DECODING, "decode_s", "decode", "decode", (0.8, 0.9)
    ENCODE = "encode", Phase.ENCODING, "encode_s", "encode", "encode", (0.9, 0.96)
    UPLOAD = "upload", Phase.UPLOADING, "upload_s", "upload", "upload", (0.96, 1.0)


#: A failure's ``stage`` for a job refused before it ran (its body broke the rules), and for
#: one whose stage is not known (the sibling's catch-all).
VALIDATION_STAGE: Final = "validation"
UNKNOWN_STAGE: Final = "unknown"
_ORDER: Final = list(Stage)


class IllegalTransition(RuntimeError):
    """A transition the life cycle does not allow: a programming error, never a job's fault."""


@attrs.define
class JobLifecycle:
    """The mutable record of one job's life. Every change goes through a method that checks it.

    Attributes:
        state: where the run stands.
        stage: the current stage while running, the last one reached afterwards.
        progress: overall progress, 0..1, monotonic; 1.0 only on success.
    """

    job_id: str
    state: JobState = JobState.PENDING
    stage: Stage | None = None
    progress: float = 0.0

    @property
    def phase(self) -> Phase | None:
        """The contract's phase of the current stage."""
        return self.stage.phase if self.stage is not None else None

    def start(self) -> None:
        self._require(JobState.PENDING, "start")
        self.state = JobState.RUNNING

    def enter(self, stage: Stage) -> None:
        """Move forward to ``stage``; stages may be skipped, never revisited."""
        self._require(JobState.RUNNING, f"enter {stage.value}")
        if self.stage is not None and _ORDER.index(stage) <= _ORDER.index(self.stage):
            raise IllegalTransition(f"job {self.job_id}: cannot go from {self.stage.value} to {stage.value}")
        self.stage = stage
        self._raise_progress(stage.span[0])

    def advance(self, fraction: float) -> None:
        """Record ``fraction`` (0..1) of the current stage done; progress never goes back."""
        self._require(JobState.RUNNING, "advance")
        if self.stage is None:
            raise IllegalTransition(f"job {self.job_id}: advance before any stage")
        low, high = self.stage.span
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
