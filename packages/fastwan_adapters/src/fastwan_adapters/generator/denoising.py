"""The denoising stage: the stock Wan pipelines run the distilled steps, and stop between them.

The pipelines only denoise here (``output_type="latent"``): the prompt is already encoded and
the decode follows separately, so each stage is reported and timed on its own. After every
step the job's events hear of it, and before the next one a cancellation is honoured.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.pipelines.wan.pipeline_wan import WanPipeline
from diffusers.pipelines.wan.pipeline_wan_i2v import WanImageToVideoPipeline

from fastwan_adapters.generator.pictures import fit_first_frame
from fastwan_adapters.generator.sampling import DistilledFlowScheduler, job_generator
from fastwan_core.plan import GenerationPlan
from fastwan_core.ports import GenerationEvents, Picture

__all__ = ["denoise"]


def denoise(
    pipeline: WanPipeline | WanImageToVideoPipeline,
    scheduler: DistilledFlowScheduler,
    plan: GenerationPlan,
    *,
    image: Picture | None,
    prompt_embeds: torch.Tensor,
    events: GenerationEvents,
) -> torch.Tensor:
    """The plan's latents after its distilled steps: T2V with ``pipeline`` a ``WanPipeline``,
    I2V (``image`` the first frame) with a ``WanImageToVideoPipeline``."""
    total = plan.steps

    def after_step(_pipeline: Any, index: int, _timestep: Any, _tensors: dict[str, Any]) -> dict[str, Any]:
        events.step(index + 1, total)
        if index + 1 < total:
            events.check_cancelled()  # before the next step
        return {}

    generator = job_generator(plan.seed)
    scheduler.prepare(plan.timesteps, generator)
    size = plan.generated_size
    arguments: dict[str, Any] = {
        "prompt_embeds": prompt_embeds,
        "height": size.height,
        "width": size.width,
        "num_frames": plan.num_frames,
        "num_inference_steps": total,
        "guidance_scale": plan.guidance_scale,
        "generator": generator,
        "output_type": "latent",
        "return_dict": False,
        "callback_on_step_end": after_step,
        "callback_on_step_end_tensor_inputs": [],
    }
    if image is not None:
        arguments["image"] = fit_first_frame(image, size)
    latents: torch.Tensor = pipeline(**arguments)[0]
    return latents
