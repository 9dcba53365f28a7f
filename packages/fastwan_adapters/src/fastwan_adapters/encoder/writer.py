"""The MP4 writer: RGB frames to one H.264 MP4 that every browser plays, and its codec options.

PyAV drives FFmpeg in-process: no ``ffmpeg`` subprocess, no pipe to feed, and one libswscale
pass per frame that both resizes (generated size to requested size) and converts RGB to
BT.709 yuv420p. The MP4 is written to a temporary file because ``+faststart`` makes FFmpeg
reopen the output by name to move the ``moov`` atom in front; the file lives only for the call.

The codec is libx264 (CPU) or ``h264_nvenc`` (the GPU's hardware encoder, where there is one;
``choice`` decides which runs): same container, pixel format, colour tags and size.

The bottom of the encoder package: it imports none of the modules above it. The settings it
reads come from the encoder that makes it (``pyav.PyAVEncoder``), as :class:`Mp4Options`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal, Protocol

import av
import numpy as np
from av.video.reformatter import (
    ColorPrimaries,
    ColorRange,
    Colorspace,
    ColorTrc,
    Interpolation,
    VideoReformatter,
)

from fastwan_adapters.encoder.frames import cover_window
from fastwan_core.errors import ErrorCode, JobFailure
from fastwan_core.values import Size

__all__ = [
    "CODECS",
    "RESIZE_FILTERS",
    "X264_PRESETS",
    "Codec",
    "EncoderOpenError",
    "Mp4Options",
    "Mp4Writer",
    "ResizeFilter",
    "encoding_failed",
]

# The logger's name as before the encoder became a package: the ``logger`` field of its log lines.
log = logging.getLogger("fastwan_adapters.encoder")

#: libx264's speed presets, fastest first.
X264_PRESETS: Final = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)

ResizeFilter = Literal["lanczos", "bicubic", "spline", "area"]
Codec = Literal["libx264", "h264_nvenc"]
#: The H.264 encoders this worker runs.
CODECS: Final[tuple[Codec, ...]] = ("libx264", "h264_nvenc")
#: NVENC's constant-quality settings: ``p5`` (slow) with high-quality tuning and CQ 23, whose
#: output is comparable to libx264 ``veryfast`` at CRF 22 (NVENC's CQ scale runs a little
#: lower in quality than x264's CRF at the same number).
_NVENC_OPTIONS: Final = {"preset": "p5", "tune": "hq", "rc": "vbr", "cq": "23", "b": "0"}

_INTERPOLATION: Final[dict[str, Interpolation]] = {
    "lanczos": Interpolation.LANCZOS,
    "bicubic": Interpolation.BICUBIC,
    "spline": Interpolation.SPLINE,
    "area": Interpolation.AREA,
}
#: The libswscale filters a resize can use (``PyAVEncoder.resize_filter``).
RESIZE_FILTERS: Final = tuple(_INTERPOLATION)


class Mp4Options(Protocol):
    """The encoder's settings a writer reads (``PyAVEncoder`` has them and documents each).

    A protocol, so that the writer need not import the encoder that sits above it.
    """

    @property
    def crf(self) -> int: ...
    @property
    def preset(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def resize_filter(self) -> ResizeFilter: ...
    @property
    def temp_dir(self) -> Path | None: ...
    @property
    def codec(self) -> Codec: ...
    @property
    def mbtree(self) -> bool: ...
    @property
    def x264_params(self) -> str: ...


def encoding_failed(error: BaseException) -> JobFailure:
    """FFmpeg or the temporary file failed: retryable, it may be this machine's disk."""
    return JobFailure(ErrorCode.INTERNAL_ERROR, f"encoding the MP4 failed: {type(error).__name__}: {error}")


class EncoderOpenError(RuntimeError):
    """The codec cannot be opened here (``h264_nvenc`` on a machine without a hardware encoder)."""


class Mp4Writer:
    """One MP4 being written to a temporary file, frame by frame, from whichever thread.

    Not thread-safe: one thread at a time (the streaming session's encoder thread, or the caller).
    With ``cover``, each frame is first cut to its centred window of the target's aspect
    (:func:`cover_window`), which the scaling pass then fills exactly.
    """

    def __init__(self, encoder: Mp4Options, target: Size, fps: int, *, cover: bool = False) -> None:
        self._encoder, self._target, self.muxed, self.frames = encoder, target, 0, 0
        self._cover = cover
        self._folder = tempfile.TemporaryDirectory(prefix="fastwan-encode-", dir=encoder.temp_dir)
        self._path = Path(self._folder.name) / "video.mp4"
        self._container: av.container.OutputContainer | None = None
        try:
            self._open(fps)
        except BaseException:
            self.discard()
            raise

    def _open(self, fps: int) -> None:
        encoder, target = self._encoder, self._target
        container = av.open(str(self._path), mode="w", format="mp4", options={"movflags": "+faststart"})
        self._container = container
        if encoder.codec == "libx264":
            options = {
                "crf": str(encoder.crf),
                "preset": encoder.preset,
                "mbtree": "1" if encoder.mbtree else "0",
            }
            if encoder.x264_params:
                options["x264-params"] = encoder.x264_params
        else:
            options = dict(_NVENC_OPTIONS)
        stream = container.add_stream(encoder.codec, rate=fps, options=options)
        stream.width, stream.height = target.width, target.height
        stream.pix_fmt = "yuv420p"
        context = stream.codec_context
        # PyAV defaults to sliced threads, which cost compression; frame threads do not.
        context.thread_type = "FRAME"
        context.thread_count = encoder.threads
        # Tagged BT.709 so that players do not guess (HD players assume 709, SD ones 601).
        context.colorspace = Colorspace.ITU709
        context.color_primaries = ColorPrimaries.BT709
        context.color_trc = ColorTrc.BT709
        context.color_range = ColorRange.MPEG
        try:
            container.start_encoding()  # opens the codec now: NVENC fails here, not mid-video
        except av.FFmpegError as error:
            raise EncoderOpenError(f"{encoder.codec} cannot open: {type(error).__name__}: {error}") from error
        self._stream = stream
        self._reformatter = VideoReformatter()
        self._time_base = Fraction(1, fps)

    def write(self, frames: Iterable[np.ndarray]) -> None:
        """Encode and mux ``frames`` (RGB uint8, ``(H, W, 3)`` each)."""
        assert self._container is not None, "the writer is closed"
        encoder, target = self._encoder, self._target
        for rgb in frames:
            if self._cover:
                x, y, width, height = cover_window(Size(rgb.shape[1], rgb.shape[0]), target)
                rgb = rgb[y : y + height, x : x + width]  # noqa: PLW2901 - the window replaces it
            frame = self._reformatter.reformat(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"),
                width=target.width,
                height=target.height,
                format="yuv420p",
                dst_colorspace=Colorspace.ITU709,
                interpolation=_INTERPOLATION[encoder.resize_filter] | Interpolation.ACCURATE_RND,
                src_color_range=ColorRange.JPEG,
                dst_color_range=ColorRange.MPEG,
                threads=encoder.threads,
            )
            frame.pts, frame.time_base = self.frames, self._time_base
            self.frames += 1
            packets = self._stream.encode(frame)
            self._container.mux(packets)
            self.muxed += len(packets)

    def finish(self, expected: int) -> bytes:
        """Flush, close and read the MP4 back; refuses one short of ``expected`` frames."""
        assert self._container is not None, "the writer is closed"
        packets = self._stream.encode(None)
        self._container.mux(packets)
        self.muxed += len(packets)
        container, self._container = self._container, None
        container.close()  # +faststart rewrites the file here
        data = self._path.read_bytes()
        if self.muxed != expected or not data:
            raise JobFailure(
                ErrorCode.INTERNAL_ERROR,
                f"the encoder wrote {self.muxed} of {expected} frames ({len(data)} bytes); "
                "refusing a broken MP4",
            )
        return data

    def discard(self) -> None:
        """Close without finishing (if still open) and delete the file. Idempotent."""
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except (av.FFmpegError, OSError):
                log.debug("closing an abandoned MP4 failed", exc_info=True)
        self._folder.cleanup()
