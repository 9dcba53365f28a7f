"""The video encoder port, for real: RGB frames to an H.264 MP4, chunk by chunk.

``open`` checks the size and fps (``frames``: odd sides are delivered one pixel smaller, and
``cover`` centre-crops to the request's aspect), opens the writer (``writer.Mp4Writer``) and
returns a session (``session``) that takes the frames chunk by chunk and encodes them in its
own thread while the generator decodes the next.

The top of the encoder package's MP4 side: it imports the writer and the session, which
import nothing of it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import av

from fastwan_adapters.encoder.frames import checked_target
from fastwan_adapters.encoder.session import StreamingSession
from fastwan_adapters.encoder.writer import (
    CODECS,
    RESIZE_FILTERS,
    X264_PRESETS,
    Codec,
    Mp4Writer,
    ResizeFilter,
    encoding_failed,
)
from fastwan_core.ports import EncodingSession
from fastwan_core.values import Size

__all__ = ["PyAVEncoder"]

# The logger's name as before the encoder became a package: the ``logger`` field of its log lines.
log = logging.getLogger("fastwan_adapters.encoder")


@attrs.frozen(kw_only=True)
class PyAVEncoder:
    """H.264 MP4 encoder (libx264, or NVENC), yuv420p, BT.709, ``+faststart``.

    The defaults were chosen with ``bench/encode.py``: against diffusers' ``export_to_video``
    (an ``ffmpeg`` subprocess, libx264 ``medium`` at CRF 25) they encode 121 frames of 720x1280
    in under half its CPU time on two cores, at a PSNR about 0.4 dB higher, for a file about
    40 % larger (0.98 MB against 0.68): cheap next to the GPU time a slower encode would hold up.

    Attributes:
        crf: libx264's constant rate factor, 0 (lossless) to 51; lower is better and larger.
        preset: a libx264 speed preset (:data:`X264_PRESETS`); at a given CRF a faster preset
            mostly costs file size, not quality.
        threads: libx264 and libswscale threads; 0 lets each pick from the CPU count.
        resize_filter: the libswscale filter used when the frames' size differs from the
            requested one (and for chroma subsampling).
        temp_dir: where the short-lived MP4 is written; ``None`` is the system default. The
            apps' encoder (``choice.build_encoder``) writes in the worker's own folder
            (``folder``), which a later start sweeps if the worker is killed mid-encode.
        codec: ``libx264`` (CRF and preset apply) or ``h264_nvenc`` (its own CQ settings).
        queue_chunks: in the streaming form, how many decoded chunks may wait for the encoder
            before the decoder waits for it (bounded memory).
        mbtree: libx264's macroblock-tree rate control, off by default: with it the same frames
            did not give the same bytes twice (6 distinct MP4s of 6 runs in ``bench/encode.py``'s
            "MP4s" column; at every thread count, most often under CPU load), so a seeded job
            would not give the same MP4 (nor ``metrics.sha1``) twice. Off, CRF 23 keeps the
            PSNR of mbtree at CRF 22 (39.48 dB against 39.55) for a file 14 % larger.
        x264_params: extra libx264 options (``key=value:key=value``).
    """

    crf: int = attrs.field(default=23, validator=[attrs.validators.ge(0), attrs.validators.le(51)])
    preset: str = attrs.field(default="veryfast", validator=attrs.validators.in_(X264_PRESETS))
    threads: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    resize_filter: ResizeFilter = attrs.field(
        default="lanczos", validator=attrs.validators.in_(RESIZE_FILTERS)
    )
    temp_dir: Path | None = None
    codec: Codec = attrs.field(default="libx264", validator=attrs.validators.in_(CODECS))
    queue_chunks: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    mbtree: bool = False
    x264_params: str = ""

    def open(self, size: Size, fps: int, *, cover: bool = False) -> EncodingSession:
        """A session that encodes an MP4 of ``size`` (odd sides less one pixel) at ``fps``, its
        RGB uint8 frames given chunk by chunk, each ``(n, height, width, 3)``; frames of another
        size are resized to it, or with ``cover`` scaled to cover it and centre-cropped (which
        does not stretch frames of another aspect).

        Raises:
            EncoderOpenError: the codec cannot open here (NVENC without a hardware encoder).
            JobFailure: ``internal_error``, not retryable, for a bad size or fps (a bug
                upstream, the same every time); ``internal_error``, retryable, when FFmpeg or
                the temporary file fails.
        """
        target = checked_target(size, fps)
        if target != size:
            log.info("delivering %s for the requested %s: H.264 yuv420p needs even sides", target, size)
        try:
            writer = self.writer(target, fps, cover=cover)  # EncoderOpenError: nothing started yet
        except (av.FFmpegError, OSError) as error:
            raise encoding_failed(error) from error
        return StreamingSession(writer, target, codec=self.codec, queue_chunks=self.queue_chunks)

    def writer(self, target: Size, fps: int, *, cover: bool = False) -> Mp4Writer:
        """An open writer of one MP4 (the codec is opened now: a failure is ``EncoderOpenError``)."""
        return Mp4Writer(self, target, fps, cover=cover)
