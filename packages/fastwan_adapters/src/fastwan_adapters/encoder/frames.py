"""What the encoder takes and what size it delivers: the checks on frames, size and fps.

The ground floor of the encoder package (no PyAV): the writer, the session and the encoder
above it check their input here, once, before any MP4 is begun.

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

from typing import Final

import numpy as np

from fastwan_core.errors import ErrorCode, JobFailure
from fastwan_core.values import Size

__all__ = ["check_chunk", "checked_target", "cover_window", "deliverable_size"]

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


def checked_target(size: Size, fps: int) -> Size:
    """The size to deliver for ``size`` (:func:`deliverable_size`), once ``size`` and ``fps`` are checked."""
    if size.width < _MIN_SIDE or size.height < _MIN_SIDE:
        raise _bad_input(f"size must be at least {_MIN_SIDE}x{_MIN_SIDE}, got {size}")
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise _bad_input(f"fps must be a positive integer, got {fps!r}")
    return deliverable_size(size)


def check_chunk(frames: object, shape: tuple[int, ...] | None) -> np.ndarray:
    """A chunk of frames, checked before any of it is encoded; ``shape``: of earlier chunks' frames.

    Raises:
        JobFailure: ``internal_error``, not retryable (a bug upstream).
    """
    if not isinstance(frames, np.ndarray):
        raise _bad_input(f"a chunk of frames must be a numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise _bad_input(f"frames must be shaped (num_frames, height, width, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise _bad_input(f"frames must be uint8 RGB (0-255), got dtype {frames.dtype}")
    height, width = frames.shape[1:3]
    if height < _MIN_SIDE or width < _MIN_SIDE:
        raise _bad_input(f"frames must be at least {_MIN_SIDE}x{_MIN_SIDE} pixels, got {width}x{height}")
    if len(frames) == 0:
        raise _bad_input("frames must hold at least one frame, got none")
    if shape is not None and frames.shape[1:] != shape:
        raise _bad_input(f"a chunk of frames is shaped {frames.shape}, unlike the earlier frames {shape}")
    return frames


def _bad_input(message: str) -> JobFailure:
    # The generator and the plan produce these arguments: a bad one is a bug in the worker,
    # and running the job again would hit it again.
    return JobFailure(ErrorCode.INTERNAL_ERROR, message, retryable=False)
