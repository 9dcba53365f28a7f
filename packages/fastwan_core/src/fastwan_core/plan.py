"""The generation plan: what the model will actually be asked to do for a job.

A pure function of the job. The model works on multiples of 32 pixels within a pixel budget
and was trained at 1280x704 and 704x1280; the job gets exactly the size it asked for, so the
plan records both sizes and how the encoder goes from one to the other. A request within 5% of
a trained size on each side (the default 720x1280 is) is generated at exactly that size, which
the model does best, and delivered by scaling to cover and centre-cropping, so nothing is
distorted; any other request is generated at the supported size nearest in aspect and resized.
"""

from __future__ import annotations

import math
from typing import Final

import attrs

from fastwan_core.job import Job
from fastwan_core.values import Size

__all__ = [
    "FASTWAN_TIMESTEPS",
    "MODEL_PIXEL_BUDGET",
    "SIZE_MULTIPLE",
    "TRAINED_SIZES",
    "TRAINED_SIZE_TOLERANCE",
    "GenerationPlan",
    "model_size_for",
    "plan_generation",
    "trained_size_for",
]

#: The distilled 3-step schedule FastWan 2.2 was trained for (sigma = t / 1000).
FASTWAN_TIMESTEPS: Final = (1000, 757, 522)
#: Wan 2.2 TI2V-5B's largest size, 1280x704 (either orientation).
MODEL_PIXEL_BUDGET: Final = 1280 * 704
#: VAE stride 16 times the transformer's 2x2 patch.
SIZE_MULTIPLE: Final = 32
#: The sizes FastWan 2.2 was trained at (landscape, portrait).
TRAINED_SIZES: Final = (Size(1280, 704), Size(704, 1280))
#: How far each side of a request may be from a trained size for that size to be used.
TRAINED_SIZE_TOLERANCE: Final = 0.05


@attrs.frozen
class GenerationPlan:
    """What to generate for one job.

    Attributes:
        generated_size: the size the model generates at (multiples of 32, within budget).
        output_size: the size delivered, exactly what the job asked for.
        cover: deliver by scaling to cover ``output_size`` and centre-cropping (no distortion)
            rather than by resizing to it; set when a trained size stands in for the request.
        timesteps: the denoising schedule actually run; its length is the step count.
        guidance_scale: always 1.0: the distilled model runs without classifier-free guidance.
    """

    prompt: str
    negative_prompt: str | None
    generated_size: Size
    output_size: Size
    num_frames: int
    fps: int
    seed: int
    cover: bool = False
    timesteps: tuple[int, ...] = FASTWAN_TIMESTEPS
    guidance_scale: float = 1.0

    @property
    def steps(self) -> int:
        return len(self.timesteps)


def plan_generation(job: Job) -> GenerationPlan:
    """The plan for ``job``: FastWan's distilled schedule whatever ``job.steps`` says."""
    requested = job.requested_size
    generated = model_size_for(requested)
    return GenerationPlan(
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        generated_size=generated,
        output_size=requested,
        num_frames=job.num_frames,
        fps=job.fps,
        seed=job.seed,
        cover=generated != requested and trained_size_for(requested) is not None,
    )


def trained_size_for(requested: Size) -> Size | None:
    """The trained size within :data:`TRAINED_SIZE_TOLERANCE` of ``requested`` on each side."""
    for trained in TRAINED_SIZES:
        if _near(requested.width, trained.width) and _near(requested.height, trained.height):
            return trained
    return None


def _near(side: int, trained: int) -> bool:
    return abs(side - trained) <= TRAINED_SIZE_TOLERANCE * trained


def model_size_for(requested: Size) -> Size:
    """The size the model generates at for ``requested``.

    A trained size when ``requested`` is near one (:func:`trained_size_for`), else the
    supported size nearest in aspect (:func:`_nearest_supported`).
    """
    return trained_size_for(requested) or _nearest_supported(requested)


def _nearest_supported(requested: Size) -> Size:
    """The model size closest in aspect to ``requested``, as large as the budget allows.

    The request is scaled down (never up) to fit the pixel budget, then each side is rounded
    to a multiple of 32, down or up; of the candidates that fit, the one nearest in aspect
    wins, the larger one on a tie. A request that already fits and is a multiple of 32 is
    returned unchanged.
    """
    scale = min(1.0, math.sqrt(MODEL_PIXEL_BUDGET / requested.pixels))
    ideal_w, ideal_h = requested.width * scale, requested.height * scale
    target = math.log(requested.width / requested.height)
    candidates = [
        Size(w, h)
        for w in _round_both_ways(ideal_w)
        for h in _round_both_ways(ideal_h)
        if w * h <= MODEL_PIXEL_BUDGET
    ]
    return min(candidates, key=lambda s: (abs(math.log(s.width / s.height) - target), -s.pixels))


def _round_both_ways(value: float) -> set[int]:
    down = max(SIZE_MULTIPLE, math.floor(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    up = max(SIZE_MULTIPLE, math.ceil(value / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    return {down, up}
