"""The ports: what the use case needs from the outside world, as ``typing.Protocol``.

Adapters implement these (``fastwan_adapters``); ``fastwan_core.testing`` holds a fake for
each. Images and frames are opaque to the core: it only hands the loader's picture to the
generator and the generator's frames to the encoder, so their concrete types (PIL images,
numpy arrays) stay in the adapters.

Frames move in one form, streamed: the encoder ``open``s an :class:`EncodingSession`, the
generator pushes each decoded chunk into it (a :class:`FrameSink`) and the session encodes
while the next chunk decodes, so the whole video never exists at once and a stop can land
between two chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

import attrs

from fastwan_core.errors import ErrorCode
from fastwan_core.lifecycle import Stage
from fastwan_core.plan import GenerationPlan
from fastwan_core.results import ProgressUpdate
from fastwan_core.values import ImageSource, Size

__all__ = [
    "CancelSignal",
    "Clock",
    "EncodedVideo",
    "EncodingSession",
    "FrameSink",
    "Frames",
    "GeneratedVideo",
    "GenerationEvents",
    "ImageLoader",
    "Picture",
    "ProgressReporter",
    "ResultStore",
    "Stage",
    "VideoEncoder",
    "VideoGenerator",
]


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds; only differences are meaningful."""
        ...


class CancelSignal(Protocol):
    """Whether the job should stop, and why (``fastwan_core.Cancellation`` is the real one)."""

    def is_set(self) -> bool: ...

    @property
    def code(self) -> ErrorCode:
        """``CANCELLED``, or the failure code the stopped job is reported with."""
        ...

    @property
    def message(self) -> str: ...


class Picture(Protocol):
    """A decoded RGB image (``PIL.Image.Image`` satisfies it)."""

    @property
    def size(self) -> tuple[int, int]: ...


class Frames(Protocol):
    """A chunk of decoded video frames, in the generator's and encoder's shared format."""

    def __len__(self) -> int: ...


@attrs.frozen
class GeneratedVideo:
    """What a generation cost and how it was made (its frames went into a :class:`FrameSink`).

    Attributes:
        attention: the self-attention that ran (``"vsa"`` or ``"dense"``), if the generator says.
        vsa_sparsity: the share of key cubes VSA skipped, when VSA ran.
        vae_decoder: which decoder made the frames (``full`` or ``tiny``), for ``metrics``.
        prompt_cache: ``hit`` or ``miss`` when the prompt embeddings are cached, else None.
    """

    peak_vram_gb: float = 0.0
    attention: str | None = None
    vsa_sparsity: float | None = None
    vae_decoder: str | None = None
    prompt_cache: str | None = None


@attrs.frozen
class EncodedVideo:
    """An encoded MP4, held in memory (a 5 s clip is a few MB).

    Attributes:
        size: the size actually delivered; the requested one except where the codec cannot
            carry it (H.264 4:2:0 has no odd sides: the encoder documents what it does).
        encoder: the codec that ran (``libx264``, ``h264_nvenc``), for ``metrics.encoder``.
        encoding_s: the seconds the encoder itself worked, as it measured them; they overlap
            the decode. None: the caller's own timing stands.
    """

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    size: Size
    content_type: str = "video/mp4"
    encoder: str | None = None
    encoding_s: float | None = None

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.data).hexdigest()  # noqa: S324 - B2's checksum, not security

    @property
    def size_bytes(self) -> int:
        return len(self.data)


class GenerationEvents(Protocol):
    """Given by the use case to the generator: report stages and steps, honour cancellation."""

    def stage(self, stage: Stage) -> None:
        """A new stage of the generator's own begins (``text_encode``, ``denoise``, ``decode``,
        in that order); the previous one ends."""
        ...

    def step(self, index: int, total: int) -> None:
        """Denoising step ``index`` (1-based) of ``total`` is done."""
        ...

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if the job was cancelled: call it before each step and
        between decode chunks."""
        ...


class FrameSink(Protocol):
    """Where a streaming generator puts its frames, chunk by chunk, in order."""

    def add(self, frames: Frames) -> None:
        """Take the next chunk; may block while the consumer catches up (bounded memory).

        Raises:
            JobFailure: the consumer failed (the generator stops and lets it through).
        """
        ...


class EncodingSession(FrameSink, Protocol):
    """One video being encoded as its frames arrive; ends with exactly one of ``finish``
    or ``abort`` (``abort`` after either is a no-op)."""

    def finish(self) -> EncodedVideo:
        """Encode what is left and return the MP4.

        Raises:
            JobFailure: ``internal_error``: the encoder failed (retryable: it may be this
                machine's), or was given what it cannot encode (not retryable: a bug upstream).
        """
        ...

    def abort(self) -> None:
        """Drop the video: stop encoding, keep nothing. Never raises."""
        ...


class ImageLoader(Protocol):
    def load(self, source: ImageSource) -> Picture:
        """Fetch and decode the first frame.

        Raises:
            JobFailure: ``image_fetch_failed`` (retryable or not) or ``invalid_input``.
        """
        ...


class VideoGenerator(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def device_name(self) -> str:
        """The GPU's name (or ``"cpu"``), for ``metrics.gpu_name``."""
        ...

    def generate(
        self,
        plan: GenerationPlan,
        image: Picture | None,
        events: GenerationEvents,
        sink: FrameSink,
    ) -> GeneratedVideo:
        """Run the plan, reporting each stage and step through ``events``; the decoded frames,
        at ``plan.generated_size``, go into ``sink`` chunk by chunk (``events.check_cancelled``
        between chunks).

        Raises:
            JobCancelled: from ``events.check_cancelled``.
            JobFailure: ``gpu_out_of_memory``, ``generation_failed`` (``fatal`` if the GPU is
                left unusable).
        """
        ...


class VideoEncoder(Protocol):
    def open(self, size: Size, fps: int, *, cover: bool = False) -> EncodingSession:
        """A session that encodes the frames it is fed to an H.264 MP4 at exactly ``size``, the
        same MP4 however they are chunked.

        Frames of another size are resized to it; with ``cover``, scaled to cover it and
        centre-cropped instead, keeping their aspect (``GenerationPlan.cover``).
        """
        ...


class ResultStore(Protocol):
    def put(self, name: str, video: EncodedVideo, metadata: Mapping[str, str]) -> str:
        """Store ``video`` under ``name`` (overwriting), return its public URL.

        Raises:
            JobFailure: ``upload_failed``.
        """
        ...


class ProgressReporter(Protocol):
    def report(self, job_id: str, update: ProgressUpdate) -> None:
        """Best effort: never raises, never blocks the job for long."""
        ...
