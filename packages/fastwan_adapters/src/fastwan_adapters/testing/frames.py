"""A frame sink that keeps every chunk: the whole video, for tests and benchmarks that look at it.

Frames travel in one form, streamed into a sink (``fastwan_core.ports.FrameSink``); whoever
wants them all at once collects them here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FrameCollector"]


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
