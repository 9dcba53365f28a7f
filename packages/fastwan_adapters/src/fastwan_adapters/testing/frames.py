"""Frames for tests and benchmarks: a first frame to hand in, and a sink that keeps every chunk.

Frames travel in one form, streamed into a sink (``fastwan_core.ports.FrameSink``); whoever
wants them all at once collects them here.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["FrameCollector", "gradient_frame"]


def gradient_frame(width: int, height: int) -> Image.Image:
    """A smooth colour gradient: a plausible first frame for image-to-video, cheap to make."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack(
        [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), (x + y) / 2], axis=-1
    )
    return Image.fromarray(rgb.astype(np.uint8))


class FrameCollector:
    """Keeps each chunk it is given (a copy: the caller may reuse its buffer).

    Attributes:
        chunks: the ``(n, height, width, 3)`` uint8 chunks, in order.
    """

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def add(self, frames: object) -> None:
        self.chunks.append(np.array(frames, copy=True))

    @property
    def frames(self) -> np.ndarray:
        """Every frame so far, ``(num_frames, height, width, 3)``."""
        return np.concatenate(self.chunks)
