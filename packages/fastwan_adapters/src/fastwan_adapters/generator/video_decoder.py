"""The decode stage: latents to uint8 frames, chunk by chunk, from the full or the tiny decoder.

``FASTWAN_VAE_DECODER=full`` runs Wan 2.2's VAE (``decoding``); ``tiny`` a TAEHV-format
decoder (``taehv``) about 50x cheaper, for operators who choose cost over fidelity. Either
way the frames come out a chunk at a time, with a cancellation check before each, and go
into the use case's sink (the encoder).
The full decoder takes de-normalised latents (``z * latents_std + latents_mean``); a tiny one
takes the latents it was trained on, which its file name says (``tiny_latents``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan

from fastwan_adapters.generator.decoding import configure_full_decoder, decode_chunks
from fastwan_adapters.generator.hub_retry import NEVER_STOPPED, StopSignal
from fastwan_adapters.generator.settings import GeneratorSettings
from fastwan_adapters.generator.tiny_latents import LatentSpace, expected_latents
from fastwan_core.errors import ErrorCode, JobFailure
from fastwan_core.plan import GenerationPlan
from fastwan_core.ports import FrameSink

if TYPE_CHECKING:
    from fastwan_adapters.generator.taehv import TinyWanDecoder

__all__ = ["VideoDecoder"]

log = logging.getLogger(__name__)


class VideoDecoder:
    """The configured decoder on ``device``, built once at load.

    ``stop`` set ends the waits of ``FASTWAN_TINY_DECODER``'s download.

    Raises (at construction):
        ModelUnavailableError: ``FASTWAN_TINY_DECODER`` cannot be had or has another layout.
        StartupStopped: ``stop`` was set during that download.
    """

    def __init__(
        self,
        vae: AutoencoderKLWan,
        settings: GeneratorSettings,
        device: torch.device,
        *,
        stop: StopSignal = NEVER_STOPPED,
    ) -> None:
        self.name = settings.vae_decoder
        self._vae, self._device = vae, device
        self._bf16 = settings.vae_decode_dtype == "bf16" and device.type == "cuda"
        self._tiny: TinyWanDecoder | None = None
        #: What the tiny decoder is fed; the full decoder always takes de-normalised latents.
        self.tiny_latents: LatentSpace | None = None
        if settings.vae_decoder == "tiny":
            # Its stream runs in the module's dtype: bf16 weights where the full decoder would autocast.
            dtype = torch.bfloat16 if self._bf16 else torch.float32
            self._tiny = _tiny_decoder(settings, device, stop).to(dtype=dtype)
            self.tiny_latents = expected_latents(settings.tiny_decoder, settings.tiny_decoder_latents)
        else:
            configure_full_decoder(
                vae,
                channels_last=settings.vae_channels_last,
                cudnn_benchmark=settings.cudnn_benchmark and device.type == "cuda",
                compile_decoder=settings.vae_compile,
            )

    def chunks(self, latents: torch.Tensor, check: Callable[[], None]) -> Iterator[np.ndarray]:
        """The video of the pipeline's ``latents`` as uint8 ``(n, H, W, 3)`` chunks, ``check``
        called before each decoder call."""
        if self._tiny is not None:
            if self.tiny_latents == "denormalised":
                # In fp32 (the latents' dtype out of the pipeline); the decoder casts to its own.
                latents = _denormalised(self._vae, latents.to(self._device, torch.float32))
            return _checked(self._tiny.decode_stream(latents.to(self._device)), check)
        vae = self._vae  # resident in every profile
        latents = _denormalised(vae, latents.to(device=self._device, dtype=vae.dtype))
        return decode_chunks(vae, latents, bf16=self._bf16, check=check)

    def deliver(
        self, plan: GenerationPlan, latents: torch.Tensor, check: Callable[[], None], sink: FrameSink
    ) -> None:
        """Decode into ``sink``, chunk by chunk.

        Raises:
            JobCancelled: from ``check``; the decoder's state is cleared before it propagates.
            JobFailure: ``generation_failed`` when the frames are not the plan's count and size.
        """
        size = plan.generated_size
        made = 0
        chunks = self.chunks(latents, check)
        try:
            for chunk in chunks:
                if chunk.shape[1:] != (size.height, size.width, 3) or made + len(chunk) > plan.num_frames:
                    raise JobFailure(
                        ErrorCode.GENERATION_FAILED,
                        f"the decoder produced frames shaped {chunk.shape} after {made} frames, expected "
                        f"{plan.num_frames} frames of {size.height}x{size.width}",
                    )
                sink.add(chunk)
                made += len(chunk)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a stop mid-decode: the decoder's cache goes now, not at garbage collection
        if made != plan.num_frames:
            raise JobFailure(
                ErrorCode.GENERATION_FAILED, f"the decoder produced {made} frames, expected {plan.num_frames}"
            )


def _denormalised(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    """``latents`` as ``vae.decode`` takes them: ``z * latents_std + latents_mean``, per channel,
    with the VAE config's statistics, on ``latents``' device and in its dtype."""
    config: Any = vae.config  # diffusers types it as a dict: a FrozenDict, its keys attributes too
    shape = (1, config.z_dim, 1, 1, 1)
    mean = torch.tensor(config.latents_mean, device=latents.device, dtype=latents.dtype).view(shape)
    std = torch.tensor(config.latents_std, device=latents.device, dtype=latents.dtype).view(shape)
    return latents * std + mean


def _checked(chunks: Iterator[np.ndarray], check: Callable[[], None]) -> Iterator[np.ndarray]:
    """``chunks`` with ``check`` before each is made (a generator makes them at ``next``)."""
    try:
        while True:
            check()
            chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _tiny_decoder(settings: GeneratorSettings, device: torch.device, stop: StopSignal) -> TinyWanDecoder:
    """``FASTWAN_TINY_DECODER``'s decoder, or random weights for the tiny model without one."""
    from fastwan_adapters.generator.taehv import build_random_tiny_decoder
    from fastwan_adapters.generator.taehv_files import load_tiny_decoder

    if settings.tiny_decoder is None:
        decoder = build_random_tiny_decoder(seed=0)
        log.info(
            "tiny VAE decoder: random weights (FASTWAN_MODEL=%s, no FASTWAN_TINY_DECODER)", settings.model
        )
    else:
        decoder = load_tiny_decoder(
            settings.tiny_decoder,
            cache_dir=settings.hub_cache_dir,
            offline=settings.offline,
            retry=settings.download_retry,
            endpoint=settings.hub_endpoint,
            stop=stop,
        )
        log.info("tiny VAE decoder: %s", settings.tiny_decoder)
    return decoder.to(device).eval().requires_grad_(False)
