"""What a job produces: its result, metrics and timings, and the progress updates on the way.

All of these are sent to the orchestrator; ``fastwan_core.wire`` gives exactly the contract's
JSON (fields that do not apply are left out, never sent as ``null``). Beside our names, the wire
form carries those the orchestrator already parses from its sibling worker (MuseTalk):
``musetalk_job_id``, ``metrics.gpu_class``/``total_time``/``stage_times`` and, on a failure,
``error_message``, ``error_type``, ``stage`` and ``stage_times`` (``fastwan_core.wire``).
"""

from __future__ import annotations

from typing import Final

import attrs

from fastwan_core.errors import ErrorCode, retry_decision
from fastwan_core.lifecycle import UNKNOWN_STAGE, VALIDATION_STAGE, JobState, Phase, Stage
from fastwan_core.values import Size

__all__ = [
    "JobResult",
    "Metrics",
    "ProgressUpdate",
    "Timings",
    "error_type_of",
]

_MEDIA_ERRORS: Final = frozenset({ErrorCode.INVALID_INPUT, ErrorCode.IMAGE_FETCH_FAILED})


def error_type_of(code: ErrorCode | None) -> str:
    """The sibling's ``error_type`` for ``code``: the orchestrator's coarse failure class.

    ``media_error``: the job's own input (the body, its image); ``unknown_error``: a bug;
    ``processing_error``: everything else that went wrong while running it.
    """
    if code in _MEDIA_ERRORS:
        return "media_error"
    if code is ErrorCode.INTERNAL_ERROR:
        return "unknown_error"
    return "processing_error"


@attrs.frozen(kw_only=True)
class Timings:
    """Seconds spent per stage (``Stage.timing`` names each stage's field); a stage that did not
    run is ``None`` (left out on the wire).

    Attributes:
        decode_s, encode_s: the encoder works while the decoder decodes, so these overlap:
            ``encode_s`` is the encoder's own working time, ``encode_tail_s`` the encoding
            still left once the last frame was decoded (what the job waited for it).
    """

    download_s: float | None = None
    text_encode_s: float | None = None
    denoise_s: float | None = None
    decode_s: float | None = None
    encode_s: float | None = None
    encode_tail_s: float | None = None
    upload_s: float | None = None
    total_s: float | None = None

    def of(self, stage: Stage) -> float | None:
        """The seconds ``stage`` took, None if it did not run."""
        seconds: float | None = getattr(self, stage.timing)
        return seconds

    def stage_times(self) -> dict[str, float]:
        """The sibling's ``stage_times``: seconds per stage that ran, under its stage names."""
        return {stage.stage_times_key: seconds for stage in Stage if (seconds := self.of(stage)) is not None}


@attrs.frozen(kw_only=True)
class Metrics:
    """The contract's ``metrics`` object, sent with every terminal status.

    Attributes:
        duration_sec: the whole job, seconds (today's field).
        peak_vram_gb: peak GPU memory allocated during the job, GiB (0 without a GPU).
        fps: frames generated per second of job time (today's field, a throughput).
        video_fps: the delivered video's frame rate.
        generated_size, output_size: the model's size and the delivered size.
        size_bytes, sha1: of the delivered MP4.
        attention: the self-attention the model ran, ``"vsa"`` or ``"dense"``.
        vsa_sparsity: VSA's sparsity, when VSA ran.
        gpu_class: ``GPU_CLASS`` (else the GPU's name): the orchestrator's price class.
        vae_decoder: the decoder that made the frames, ``full`` or ``tiny``.
        encoder: the H.264 encoder that ran, ``libx264`` or ``h264_nvenc``.
        prompt_cache: ``hit`` or ``miss`` (left out when the cache is off).

    On the wire, ``total_time`` (= ``duration_sec``) and ``stage_times`` (from ``timings``)
    are added for the orchestrator's parser of the sibling worker.
    """

    duration_sec: float
    peak_vram_gb: float | None = None
    fps: float | None = None
    timings: Timings = attrs.field(factory=Timings)
    steps: int | None = None
    seed: int | None = None
    model_id: str | None = None
    generated_size: Size | None = None
    output_size: Size | None = None
    num_frames: int | None = None
    video_fps: int | None = None
    size_bytes: int | None = None
    sha1: str | None = None
    worker_id: str | None = None
    gpu_name: str | None = None
    worker_version: str | None = None
    attention: str | None = None
    vsa_sparsity: float | None = None
    gpu_class: str | None = None
    vae_decoder: str | None = None
    encoder: str | None = None
    prompt_cache: str | None = None


@attrs.frozen(kw_only=True)
class JobResult:
    """How a job ended: the body of a terminal status and of queue mode's answer.

    Attributes:
        status: one of the terminal states.
        job_id: the orchestrator's ``musetalk_job_id``, sent under that name when known.
        error_code, retryable: set on failure and cancellation.
        stage: where a failure happened (``Stage.failure_stage``, ``validation``); when
            ``None``, a failure says ``validation`` for ``invalid_input``, else ``unknown``.
        fatal: not sent; the worker must restart after reporting this result (GPU unusable).
    """

    status: JobState = attrs.field()
    job_id: str | None = None
    output_url: str | None = None
    metrics: Metrics | None = None
    error: str | None = None
    error_code: ErrorCode | None = None
    retryable: bool | None = None
    stage: str | None = None
    fatal: bool = False

    @status.validator
    def _terminal(self, _attribute: object, value: JobState) -> None:
        if not value.is_terminal:
            raise ValueError(f"a result's status must be terminal, got {value.value}")

    @classmethod
    def failure(
        cls,
        code: ErrorCode,
        message: str,
        *,
        job_id: str | None = None,
        retryable: bool | None = None,
        metrics: Metrics | None = None,
        stage: str | None = None,
        fatal: bool = False,
    ) -> JobResult:
        """A failed (or, for ``ErrorCode.CANCELLED``, cancelled) result; ``retryable``: the
        decision its ``JobFailure`` carries, else the code's own flag (``retry_decision``)."""
        return cls(
            status=JobState.CANCELLED if code is ErrorCode.CANCELLED else JobState.FAILED,
            job_id=job_id,
            metrics=metrics,
            error=message,
            error_code=code,
            retryable=retry_decision(code, retryable),
            stage=stage,
            fatal=fatal,
        )

    @property
    def succeeded(self) -> bool:
        return self.status is JobState.SUCCEEDED

    @property
    def failure_stage(self) -> str:
        """``stage`` on the wire: where it failed, or the default for its code."""
        if self.stage is not None:
            return self.stage
        return VALIDATION_STAGE if self.error_code is ErrorCode.INVALID_INPUT else UNKNOWN_STAGE

    def progress_update(self, worker_id: str | None = None) -> ProgressUpdate:
        """The final progress call for this result, in the contract's shape."""
        if self.succeeded:
            return ProgressUpdate(
                status=self.status,
                progress=1.0,
                output_url=self.output_url,
                worker_id=worker_id,
                metrics=self.metrics,
            )
        return ProgressUpdate(
            status=self.status,
            error=self.error,
            error_code=self.error_code,
            worker_id=worker_id,
            metrics=self.metrics,
        )


@attrs.frozen(kw_only=True)
class ProgressUpdate:
    """One call to ``/internal/videogen/jobs/{musetalk_job_id}/progress``.

    Attributes:
        metrics: only on the final call (``succeeded`` or ``failed``), as the orchestrator's
            FastWan guide asks.
    """

    status: JobState
    phase: Phase | None = None
    progress: float | None = None
    step: int | None = None
    total_steps: int | None = None
    output_url: str | None = None
    error: str | None = None
    error_code: ErrorCode | None = None
    worker_id: str | None = None
    metrics: Metrics | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal
