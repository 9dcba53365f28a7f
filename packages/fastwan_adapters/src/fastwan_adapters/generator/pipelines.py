"""The two stock diffusers pipelines over one set of modules, as a loaded generator holds them.

``WanPipeline`` (T2V) and ``WanImageToVideoPipeline`` (I2V) share the tokenizer, text encoder,
transformer, VAE and the distilled scheduler, so the weights are in memory once. Both run with
``expand_timesteps=True``: Wan 2.2 TI2V's per-token timesteps, the first frame's at t=0.
"""

from __future__ import annotations

from typing import Any

import attrs
from diffusers.pipelines.wan.pipeline_wan import WanPipeline
from diffusers.pipelines.wan.pipeline_wan_i2v import WanImageToVideoPipeline

from fastwan_adapters.generator.loading import WanComponents
from fastwan_adapters.generator.sampling import DistilledFlowScheduler
from fastwan_adapters.generator.video_decoder import VideoDecoder

__all__ = ["Pipelines"]


@attrs.define
class Pipelines:
    """What a loaded generator holds; dropped as a whole by ``close``."""

    components: WanComponents
    scheduler: DistilledFlowScheduler
    t2v: WanPipeline
    i2v: WanImageToVideoPipeline
    decoder: VideoDecoder

    @classmethod
    def over(cls, components: WanComponents, decoder: VideoDecoder) -> Pipelines:
        """Both pipelines over ``components`` (already placed), with a fresh distilled scheduler."""
        scheduler = DistilledFlowScheduler.create()
        shared: dict[str, Any] = {
            "tokenizer": components.tokenizer,
            "text_encoder": components.text_encoder,
            "vae": components.vae,
            "scheduler": scheduler,
            "transformer": components.transformer,
            "expand_timesteps": True,
        }
        t2v, i2v = WanPipeline(**shared), WanImageToVideoPipeline(**shared)
        for pipeline in (t2v, i2v):
            # Untyped in diffusers; mypy's untyped_calls_exclude does not reach a call on a union.
            pipeline.set_progress_bar_config(disable=True)  # type: ignore[no-untyped-call]
        return cls(components, scheduler, t2v, i2v, decoder)
