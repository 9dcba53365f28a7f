"""The text-encode stage: the prompt's UMT5 embeddings, from the prompt cache when it holds them.

A hit is the very tensor a miss gives (``PromptCache`` keeps an exact copy), so a job gives
the same video whether its prompt was cached or not; ``metrics.prompt_cache`` says which.
"""

from __future__ import annotations

from typing import Final

import torch
from diffusers.pipelines.wan.pipeline_wan import WanPipeline

from fastwan_adapters.generator.prompt_cache import PromptCache

__all__ = ["MAX_TEXT_TOKENS", "encode_prompt"]

#: Wan's text length: prompts are padded or truncated to this many tokens.
MAX_TEXT_TOKENS: Final = 512


def encode_prompt(
    pipeline: WanPipeline, prompt: str, device: torch.device, cache: PromptCache, model: str
) -> tuple[torch.Tensor, str | None]:
    """The embeddings of ``prompt`` and ``hit``/``miss`` (None with the cache off)."""

    def encode() -> torch.Tensor:
        embeds, _ = pipeline.encode_prompt(
            prompt=prompt,
            do_classifier_free_guidance=False,  # distilled: no guidance, so no negative prompt
            max_sequence_length=MAX_TEXT_TOKENS,
            device=device,
        )
        result: torch.Tensor = embeds
        return result

    if cache.max_bytes == 0:
        return encode(), None
    embeds, hit = cache.lookup_or_encode(model, prompt, encode)
    return embeds, "hit" if hit else "miss"
