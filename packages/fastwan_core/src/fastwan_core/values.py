"""The core's ground floor: the small values and limits that jobs, results, runs and wire use.

It imports nothing of ours, so that every other module can build on it without a circle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, TypeGuard

import attrs

__all__ = [
    "JOB_ID_PATTERN",
    "MAX_IMAGE_BASE64_CHARS",
    "MAX_JOB_ID_CHARS",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "MAX_URL_CHARS",
    "NUMBER_RANGES",
    "ImageSource",
    "Size",
    "WorkerInfo",
    "is_job_id",
]

#: A job id (``musetalk_job_id``, ``buffer_job_id``): it names files and URL paths.
JOB_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_JOB_ID_CHARS: Final = 128
MAX_PROMPT_CHARS: Final = 2000
MAX_IMAGE_BASE64_CHARS: Final = 28_000_000  # 20 MB of image, base64-encoded
MAX_URL_CHARS: Final = 8192
MAX_SEED: Final = 2**63 - 1
#: The contract's bounds of each numeric job field, both ends included.
NUMBER_RANGES: Final[Mapping[str, tuple[int, int]]] = {
    "num_frames": (5, 121),
    "width": (256, 1280),
    "height": (256, 1280),
    "fps": (1, 60),
    "steps": (1, 100),
    "guidance_scale": (0, 20),
    "seed": (0, MAX_SEED),
}


@attrs.frozen
class Size:
    """A frame size in pixels."""

    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def as_list(self) -> list[int]:
        """``[w, h]``, the contract's shape for sizes in ``metrics``."""
        return [self.width, self.height]

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@attrs.frozen
class ImageSource:
    """Where the first frame comes from: exactly one of ``url`` and ``base64`` is set."""

    url: str | None = None
    base64: str | None = None

    def describe(self) -> str:
        """A log-safe description: never the URL's path or query (it may be signed)."""
        if self.url is None:
            return f"inline base64 ({len(self.base64 or '')} characters)"
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}/..."


def is_job_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid job id (``musetalk_job_id`` or ``buffer_job_id``).

    Ids name files and URL paths, so they are 1 to 128 letters, digits, '.', '_' or '-',
    starting with a letter or digit.
    """
    return isinstance(value, str) and JOB_ID_PATTERN.fullmatch(value) is not None


@attrs.frozen
class WorkerInfo:
    """Who runs the job, for ``metrics`` and progress calls.

    Attributes:
        gpu_class: the operator's name for this GPU (``GPU_CLASS``); ``None``: the
            generator's device name.
    """

    worker_id: str | None = None
    worker_version: str | None = None
    gpu_class: str | None = None
