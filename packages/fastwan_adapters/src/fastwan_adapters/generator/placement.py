"""Putting the components where the memory profile says, and the transformer's run-time options."""

from __future__ import annotations

import logging

import torch
from diffusers.hooks.group_offloading import apply_group_offloading

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator.loading import WanComponents
from fastwan_adapters.generator.profiles import MemoryProfile
from fastwan_adapters.generator.settings import GeneratorSettings

__all__ = ["configure_transformer", "place_components"]

log = logging.getLogger(__name__)

_CPU = torch.device("cpu")


def place_components(components: WanComponents, profile: MemoryProfile, device: torch.device) -> None:
    """Move or stream each component as ``profile`` says; the VAE is always resident.

    Streamed components are moved to the CPU first (group offloading keeps its copy there)
    and get leaf-level group offloading with a prefetching CUDA stream. On a CPU device the
    hooks are installed without a stream: nothing is saved, but the code path is the same.
    """
    for module in components.modules().values():
        module.requires_grad_(False)
    _stream_or_move(components.text_encoder, profile.stream_text_encoder, device)
    _stream_or_move(components.transformer, profile.stream_transformer, device)
    components.vae.to(device)  # type: ignore[arg-type]  # diffusers' @wraps(Module.to) mistypes self
    if profile.vae_tiling:
        components.vae.enable_tiling()
    else:
        components.vae.disable_tiling()


def configure_transformer(
    components: WanComponents, settings: GeneratorSettings, profile: MemoryProfile, *, vsa: bool = False
) -> None:
    """Apply ``ATTENTION_BACKEND`` and ``TORCH_COMPILE`` to the transformer.

    With VSA the blocks compile around the attention (which compiles its own kernel), so
    not as one full graph.
    """
    transformer = components.transformer
    if settings.attention_backend is not None:
        try:
            transformer.set_attention_backend(settings.attention_backend)
        except (ImportError, RuntimeError, ValueError) as error:  # e.g. flash-attn not installed
            raise ConfigError(
                f"ATTENTION_BACKEND={settings.attention_backend!r} cannot be used here: "
                f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            ) from error
        log.info("transformer attention backend: %s", settings.attention_backend)
    if not settings.torch_compile:
        return
    if profile.stream_transformer:
        log.warning(
            "TORCH_COMPILE=1 is ignored with GPU_MEMORY_PROFILE=%s: compiled blocks and streamed weights "
            "do not mix; the transformer runs eagerly",
            profile.name,
        )
        return
    # Dynamic shapes: one compilation serves every job size, so the warm-up's short clip
    # compiles what the first real job will run.
    transformer.compile_repeated_blocks(fullgraph=not vsa, dynamic=True)
    log.info("transformer blocks compiled with torch.compile (regional, dynamic shapes)")


def _stream_or_move(module: torch.nn.Module, stream: bool, device: torch.device) -> None:
    if not stream:
        module.to(device)
        return
    module.to(_CPU)
    apply_group_offloading(
        module,
        onload_device=device,
        offload_device=_CPU,
        offload_type="leaf_level",
        use_stream=device.type == "cuda",
    )
