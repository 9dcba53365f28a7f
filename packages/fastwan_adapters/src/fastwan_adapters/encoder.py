"""The video encoder port, for real: RGB frames to an H.264 MP4 that every browser plays.

PyAV drives FFmpeg in-process: no ``ffmpeg`` subprocess, no pipe to feed, and one libswscale
pass per frame that both resizes (generated size to requested size) and converts RGB to
BT.709 yuv420p. The MP4 is written to a temporary file because ``+faststart`` makes FFmpeg
reopen the output by name to move the ``moov`` atom in front; the file lives only for the call.

Two forms, one writer (:class:`Mp4Writer`), so they give the same bytes for the same frames:
``encode`` takes every frame at once; ``open`` returns a session (``encoder_stream``) that
takes them chunk by chunk and encodes in its own thread while the generator decodes the next.
The codec is libx264 (CPU) or ``h264_nvenc`` (the GPU's hardware encoder, where there is one;
``encoder_choice`` decides which runs): same container, pixel format, colour tags and size.

Odd sizes: H.264 cannot carry an odd width or height in 4:2:0. Its frame cropping works in
units of one chroma sample, two pixels (ITU-T H.264, 7.4.2.1.1, ``CropUnitX``/``CropUnitY``),
and libx264 refuses odd dimensions for yuv420p. The contract asks for both yuv420p and the
exact size, so an odd side is delivered one pixel smaller (the whole picture is scaled into
it, nothing is cut off) and :attr:`EncodedVideo.size` says what was delivered; see
:func:`deliverable_size`.

Cover: frames generated at a trained size for a request of a slightly different aspect
(704x1280 for 720x1280) are cut to the centred window of the request's aspect before the same
swscale pass scales it, so the picture keeps its proportions (:func:`cover_window`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal

import attrs
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

from fastwan_core.errors import ErrorCode, JobFailure
from fastwan_core.job import Size
from fastwan_core.ports import EncodedVideo, EncodingSession, Frames

__all__ = [
    "CODECS",
    "X264_PRESETS",
    "Codec",
    "EncoderOpenError",
    "Mp4Writer",
    "PyAVEncoder",
    "ResizeFilter",
    "cover_window",
    "deliverable_size",
]

log = logging.getLogger(__name__)

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
_MIN_SIDE: Final = 2


def deliverable_size(requested: Size) -> Size:
    """The size an H.264 yuv420p video can have for ``requested``: each odd side less one pixel."""
    return Size(requested.width - requested.width % 2, requested.height - requested.height % 2)


def cover_window(source: Size, target: Size) -> tuple[int, int, int, int]:
    """``(x, y, width, height)``: the centred part of ``source`` with ``target``'s aspect.

    Scaled to ``target``, it covers it exactly: the smallest scale at which ``source`` covers
    ``target`` is kept, and what overflows on the other axis is cut evenly from both sides
    (rounded to whole pixels, so the aspect is kept to within half a pixel).
    """
    scale = max(target.width / source.width, target.height / source.height)
    width = min(source.width, max(1, round(target.width / scale)))
    height = min(source.height, max(1, round(target.height / scale)))
    return (source.width - width) // 2, (source.height - height) // 2, width, height


@attrs.frozen(kw_only=True)
class PyAVEncoder:
    """H.264 MP4 encoder (libx264, or NVENC), yuv420p, BT.709, ``+faststart``.

    The defaults were chosen with ``bench/encode.py``: against diffusers' ``export_to_video``
    (an ``ffmpeg`` subprocess, libx264 ``medium`` at CRF 25) they encode 121 frames of 720x1280
    over twice as fast on two cores, at a PSNR about 0.5 dB higher, for a file about a quarter
    larger: a few hundred kB, cheap next to the GPU time a slower encode would hold up.

    Attributes:
        crf: libx264's constant rate factor, 0 (lossless) to 51; lower is better and larger.
        preset: a libx264 speed preset (:data:`X264_PRESETS`); at a given CRF a faster preset
            mostly costs file size, not quality.
        threads: libx264 and libswscale threads; 0 lets each pick from the CPU count.
        resize_filter: the libswscale filter used when the frames' size differs from the
            requested one (and for chroma subsampling).
        temp_dir: where the short-lived MP4 is written; ``None`` is the system default. The
            apps' encoder (``encoder_choice.build_encoder``) writes in the worker's own folder
            (``encoder_folder``), which a later start sweeps if the worker is killed mid-encode.
        codec: ``libx264`` (CRF and preset apply) or ``h264_nvenc`` (its own CQ settings).
        queue_chunks: in the streaming form, how many decoded chunks may wait for the encoder
            before the decoder waits for it (bounded memory).
        x264_params: extra libx264 options (``key=value:key=value``). libx264's default
            macroblock-tree rate control (``mbtree``) does not give the same bytes twice for
            the same frames (measured here, at every thread count); ``mbtree=0`` does, which
            the tests that compare MP4 bytes use.
    """

    crf: int = attrs.field(default=22, validator=[attrs.validators.ge(0), attrs.validators.le(51)])
    preset: str = attrs.field(default="veryfast", validator=attrs.validators.in_(X264_PRESETS))
    threads: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    resize_filter: ResizeFilter = attrs.field(
        default="lanczos", validator=attrs.validators.in_(tuple(_INTERPOLATION))
    )
    temp_dir: Path | None = None
    codec: Codec = attrs.field(default="libx264", validator=attrs.validators.in_(CODECS))
    queue_chunks: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    x264_params: str = ""

    def open(self, size: Size, fps: int, *, cover: bool = False) -> EncodingSession:
        """A streaming session: the same MP4 as ``encode``, its frames given chunk by chunk.

        Raises:
            EncoderOpenError: the codec cannot open here (NVENC without a hardware encoder).
            JobFailure: as ``encode``, for a bad size or fps.
        """
        from fastwan_adapters.encoder_stream import StreamingSession

        target = _checked_target(size, fps)
        if target != size:
            log.info("delivering %s for the requested %s: H.264 yuv420p needs even sides", target, size)
        return StreamingSession(self, target, fps, cover=cover)

    def writer(self, target: Size, fps: int, *, cover: bool = False) -> Mp4Writer:
        """An open writer of one MP4 (the codec is opened now: a failure is ``EncoderOpenError``)."""
        return Mp4Writer(self, target, fps, cover=cover)

    def encode(self, frames: Frames, size: Size, fps: int, *, cover: bool = False) -> EncodedVideo:
        """Encode ``frames`` to an MP4 of ``size`` (odd sides less one pixel) at ``fps``.

        Args:
            frames: RGB uint8 frames, a ``(num_frames, height, width, 3)`` array or a sequence
                of ``(height, width, 3)`` arrays of one shape.
            size: the requested output size; frames of another size are resized to it.
            fps: frames per second of the output.
            cover: scale to cover ``size`` and centre-crop, rather than resize (which
                stretches frames of another aspect).

        Raises:
            JobFailure: ``internal_error``, not retryable, for frames or arguments that break
                the rules above (a bug upstream, the same every time); ``internal_error``,
                retryable, when FFmpeg or the temporary file fails.
        """
        count, source = _frame_source(frames)
        target = _checked_target(size, fps)
        if target != size:
            log.info("delivering %s for the requested %s: H.264 yuv420p needs even sides", target, size)
        started = time.perf_counter()
        try:
            data = self._encode_to_bytes(source, count, target, fps, cover)
        except (av.FFmpegError, OSError) as error:
            raise encoding_failed(error) from error
        return EncodedVideo(
            data=data, size=target, encoder=self.codec, encoding_s=time.perf_counter() - started
        )

    def _encode_to_bytes(
        self, source: Iterator[np.ndarray], count: int, target: Size, fps: int, cover: bool
    ) -> bytes:
        writer = self.writer(target, fps, cover=cover)
        try:
            writer.write(source)
            return writer.finish(count)
        finally:
            writer.discard()


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

    def __init__(self, encoder: PyAVEncoder, target: Size, fps: int, *, cover: bool = False) -> None:
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
            options = {"crf": str(encoder.crf), "preset": encoder.preset}
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


def _checked_target(size: Size, fps: int) -> Size:
    if size.width < _MIN_SIDE or size.height < _MIN_SIDE:
        raise _bad_input(f"size must be at least {_MIN_SIDE}x{_MIN_SIDE}, got {size}")
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise _bad_input(f"fps must be a positive integer, got {fps!r}")
    return deliverable_size(size)


def check_chunk(frames: object, shape: tuple[int, ...] | None) -> np.ndarray:
    """A streamed chunk, checked as ``encode`` checks its frames; ``shape``: of earlier chunks' frames.

    Raises:
        JobFailure: ``internal_error``, not retryable (a bug upstream).
    """
    if not isinstance(frames, np.ndarray):
        raise _bad_input(f"a chunk of frames must be a numpy array, got {type(frames).__name__}")
    _frame_source(frames)
    if shape is not None and frames.shape[1:] != shape:
        raise _bad_input(f"a chunk of frames is shaped {frames.shape}, unlike the earlier frames {shape}")
    return frames


def _frame_source(frames: object) -> tuple[int, Iterator[np.ndarray]]:
    """Check the frames up front (so no half-written video) and iterate them as HxWx3 arrays."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise _bad_input(f"frames must be shaped (num_frames, height, width, 3), got {frames.shape}")
        _check_dtype(frames.dtype)
        _check_frame_size(frames.shape[1], frames.shape[2])
        if len(frames) == 0:
            raise _bad_input("frames must hold at least one frame, got none")
        return len(frames), iter(frames)
    if not isinstance(frames, Sequence) or isinstance(frames, str | bytes):
        raise _bad_input(f"frames must be a numpy array or a sequence of arrays, got {type(frames).__name__}")
    if len(frames) == 0:
        raise _bad_input("frames must hold at least one frame, got none")
    first = frames[0]
    for index, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray):
            raise _bad_input(f"frames[{index}] must be a numpy array, got {type(frame).__name__}")
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise _bad_input(f"frames[{index}] must be shaped (height, width, 3), got {frame.shape}")
        if frame.shape != first.shape:
            raise _bad_input(f"frames[{index}] is shaped {frame.shape}, unlike frames[0] {first.shape}")
        _check_dtype(frame.dtype, f"frames[{index}]")
    _check_frame_size(first.shape[0], first.shape[1])
    return len(frames), iter(frames)


def _check_dtype(dtype: np.dtype, name: str = "frames") -> None:
    if dtype != np.uint8:
        raise _bad_input(f"{name} must be uint8 RGB (0-255), got dtype {dtype}")


def _check_frame_size(height: int, width: int) -> None:
    if height < _MIN_SIDE or width < _MIN_SIDE:
        raise _bad_input(f"frames must be at least {_MIN_SIDE}x{_MIN_SIDE} pixels, got {width}x{height}")


def _bad_input(message: str) -> JobFailure:
    # The generator and the plan produce these arguments: a bad one is a bug in the worker,
    # and running the job again would hit it again.
    return JobFailure(ErrorCode.INTERNAL_ERROR, message, retryable=False)
