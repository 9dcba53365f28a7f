"""Pictures in and frames out: the first frame fitted to the model's size, decoded video to uint8.

The first frame is scaled to cover the generated size and centre-cropped, never stretched:
the model's size keeps the job's aspect ratio (within 32-pixel rounding), so for a picture of
that aspect the crop is at most a few pixels, and a picture of another aspect loses its
edges rather than having its subject distorted.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import torch
from PIL import Image, ImageOps

from fastwan_core.values import Size

__all__ = ["fit_first_frame", "to_uint8_frames"]

#: Frames converted per chunk, so the float copy of a 121-frame 1280x704 video (1.3 GB) never
#: exists at once on a small GPU.
_FRAMES_PER_CHUNK: Final = 16


def fit_first_frame(picture: object, size: Size) -> Image.Image:
    """``picture`` (a PIL image, or an ``(H, W, 3)`` uint8 array) as RGB at exactly ``size``."""
    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(picture)
    if not isinstance(picture, Image.Image):
        raise TypeError(f"the first frame must be a PIL image or a numpy array, got {type(picture).__name__}")
    rgb = picture.convert("RGB")
    if rgb.size == (size.width, size.height):
        return rgb
    return ImageOps.fit(rgb, (size.width, size.height), method=Image.Resampling.LANCZOS)


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """The VAE's output, ``(1, 3, frames, H, W)`` in [-1, 1], as ``(frames, H, W, 3)`` uint8 RGB."""
    if video.ndim != 5 or video.shape[0] != 1 or video.shape[1] != 3:
        raise ValueError(
            f"decoded video must be shaped (1, 3, frames, height, width), got {tuple(video.shape)}"
        )
    clip = video[0]
    count, height, width = clip.shape[1:]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for start in range(0, count, _FRAMES_PER_CHUNK):
        part = clip[:, start : start + _FRAMES_PER_CHUNK].float()
        part = part.add(1.0).mul(127.5).clamp(0.0, 255.0).round().to(torch.uint8)
        frames[start : start + part.shape[1]] = part.permute(1, 2, 3, 0).cpu().numpy()
    return frames
