"""The chaos run's jobs: a seeded mix of sizes, text- and image-to-video, invalid ones and ones to
cancel, split between the two modes.

Sizes are small (the tiny model on a CPU: a 256x256x5 job is a fraction of a second) but mixed,
so that some jobs last long enough for a kill to land mid-step or mid-decode. Every side is even:
H.264 4:2:0 delivers an odd side one pixel smaller (README, "Known limits"), and the check
compares the stored video with the size asked for. Image-to-video jobs carry their first frame
inline (``image_base64``) or as a URL on the run's own image server (``image_url``).
"""

from __future__ import annotations

import base64
import io
import random
from typing import Any, Final, Literal

import attrs
from PIL import Image

__all__ = ["Mode", "PlannedJob", "plan_jobs", "png"]

Mode = Literal["buffer", "queue"]

#: (width, height, frames), weight: mostly tiny jobs, a few that last seconds.
_SIZES: Final = (
    ((256, 256, 5), 6),
    ((320, 256, 9), 3),
    ((256, 320, 9), 2),
    ((384, 256, 13), 2),
    ((512, 288, 17), 1),
)
_PROMPTS: Final = (
    "a red fox in the snow",
    "a lighthouse at dusk",
    "rain on a window",
    "a cat on a sofa",
    "waves on a pebble beach",
)
#: Each breaks one of the contract's rules; the worker must answer invalid_input, once.
_INVALID: Final = (
    {"width": 2000},
    {"num_frames": 6},
    {"prompt": ""},
    {"fps": 0},
)
INVALID_SHARE: Final = 0.06
CANCEL_SHARE: Final = 0.06  # of buffer jobs: the orchestrator cancels them while they run
IMAGE_SHARE: Final = 0.3


@attrs.frozen
class PlannedJob:
    """One job of the run, as the orchestrator (buffer) or Salad's queue (queue) hands it out.

    Attributes:
        key: its ``musetalk_job_id`` (the output name and the progress endpoint's id).
        body: the job's JSON.
        invalid: it breaks a rule on purpose.
        cancel: the orchestrator cancels it once it runs (buffer mode only).
    """

    key: str
    mode: Mode
    body: dict[str, Any]
    width: int
    height: int
    frames: int
    invalid: bool = False
    cancel: bool = False
    image: Literal["none", "base64", "url"] = "none"


def plan_jobs(rng: random.Random, count: int, *, seed: int, image_url: str) -> list[PlannedJob]:
    """``count`` jobs, alternating modes; ``image_url`` serves the first frame of URL jobs."""
    jobs = []
    sizes, weights = zip(*_SIZES, strict=True)
    for index in range(count):
        mode: Mode = "buffer" if index % 2 == 0 else "queue"
        key = f"s{seed}-{mode[0]}{index:04d}"
        width, height, frames = rng.choices(sizes, weights)[0]
        body: dict[str, Any] = {
            "musetalk_job_id": key,
            "prompt": rng.choice(_PROMPTS),
            "width": width,
            "height": height,
            "num_frames": frames,
            "seed": rng.randrange(1000),
        }
        image: Literal["none", "base64", "url"] = "none"
        if rng.random() < IMAGE_SHARE:
            image = "url" if rng.random() < 0.4 else "base64"
            if image == "url":
                body["image_url"] = f"{image_url}/{key}.png"
            else:
                body["image_base64"] = base64.b64encode(png(width, height, index)).decode()
        invalid = rng.random() < INVALID_SHARE
        if invalid:
            body.update(rng.choice(_INVALID))
        cancel = mode == "buffer" and not invalid and rng.random() < CANCEL_SHARE
        jobs.append(PlannedJob(key, mode, body, width, height, frames, invalid, cancel, image))
    return jobs


def png(width: int, height: int, shade: int) -> bytes:
    """A first frame: a flat colour, as a PNG."""
    picture = Image.new("RGB", (width, height), ((shade * 37) % 256, (shade * 91) % 256, 128))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
