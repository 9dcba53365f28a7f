"""The video encoder: RGB frames to an H.264 MP4 (PyAV), and which codec runs.

Bottom to top; each module imports only those below it:

- ``frames``: the checks on frames, size and fps; the size delivered (:func:`deliverable_size`,
  :func:`cover_window`).
- ``writer``: :class:`Mp4Writer`, one MP4 written frame by frame, and the codec options.
- ``session``: :class:`StreamingSession`, chunks in, encoded in a thread of their own.
- ``pyav``: :class:`PyAVEncoder`, the core's ``VideoEncoder`` port.

Beside them: ``folder`` (:class:`EncoderFolder`, the worker's own folder of temporary MP4s)
and ``choice`` (``FASTWAN_ENCODER``: :func:`build_encoder`, the NVENC probe, the fallback to
libx264), which the apps call.
"""

from __future__ import annotations

from fastwan_adapters.encoder.choice import (
    ENCODER_CHOICES,
    EncoderSettings,
    FallbackEncoder,
    build_encoder,
    nvenc_problem,
)
from fastwan_adapters.encoder.folder import EncoderFolder
from fastwan_adapters.encoder.frames import cover_window, deliverable_size
from fastwan_adapters.encoder.pyav import PyAVEncoder
from fastwan_adapters.encoder.session import StreamingSession
from fastwan_adapters.encoder.writer import (
    CODECS,
    X264_PRESETS,
    Codec,
    EncoderOpenError,
    Mp4Writer,
    ResizeFilter,
)

__all__ = [
    "CODECS",
    "ENCODER_CHOICES",
    "X264_PRESETS",
    "Codec",
    "EncoderFolder",
    "EncoderOpenError",
    "EncoderSettings",
    "FallbackEncoder",
    "Mp4Writer",
    "PyAVEncoder",
    "ResizeFilter",
    "StreamingSession",
    "build_encoder",
    "cover_window",
    "deliverable_size",
    "nvenc_problem",
]
