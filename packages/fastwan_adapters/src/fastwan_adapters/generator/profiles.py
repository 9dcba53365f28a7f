"""Memory profiles: where the model's weights live, chosen from the GPU's memory.

The weights in bf16: transformer about 9.3 GiB, UMT5-XXL text encoder about 10.6 GiB, VAE
(kept in fp32 for a faithful first-frame encoding) about 2.6 GiB. Decoding 121 frames at
1280x704 needs several GiB more. So:

- ``resident`` (40 GB cards and up): everything on the GPU; nothing moves per job.
- ``text-encoder-offload`` (about 24 GB): transformer and VAE stay on the GPU; the text encoder
  stays in (pinned) CPU memory and is streamed to the GPU layer by layer while it encodes, so
  it is off the GPU the moment encoding ends.
- ``cpu-offload`` (10-16 GB cards): the text encoder and the transformer are both streamed
  layer by layer, and the VAE decodes in tiles. A whole-model offload cannot work on a 10 GB
  card: neither the text encoder nor the transformer fits on it alone.

Streaming is diffusers' group offloading at leaf level with a CUDA stream that prefetches
the next layer while the current one computes, so a compute-bound video model loses little.
"""

from __future__ import annotations

from typing import Final

import attrs

from fastwan_adapters.generator.settings import MemoryProfileName

__all__ = ["PROFILES", "MemoryProfile", "choose_profile"]

_GIB: Final = 1024**3


@attrs.frozen
class MemoryProfile:
    """Where each component lives.

    Attributes:
        stream_text_encoder: the text encoder is kept on the CPU and streamed in to encode.
        stream_transformer: the transformer is kept on the CPU and streamed in each step.
        vae_tiling: decode in overlapping tiles, bounding the VAE's activations.
        min_total_gib: the smallest GPU (total memory as CUDA reports it) ``auto`` picks it for.
    """

    name: MemoryProfileName
    stream_text_encoder: bool
    stream_transformer: bool
    vae_tiling: bool
    min_total_gib: float


#: Largest first: ``auto`` takes the first whose ``min_total_gib`` the GPU reaches. The
#: thresholds sit below the nominal sizes because CUDA reports less than the label: a
#: "40 GB" A100 shows 39.4 GiB, a "24 GB" RTX 4090 23.6 GiB.
PROFILES: Final[dict[str, MemoryProfile]] = {
    profile.name: profile
    for profile in (
        MemoryProfile("resident", False, False, False, min_total_gib=38.0),
        MemoryProfile("text-encoder-offload", True, False, False, min_total_gib=20.0),
        MemoryProfile("cpu-offload", True, True, True, min_total_gib=0.0),
    )
}


def choose_profile(requested: MemoryProfileName, total_bytes: int | None) -> MemoryProfile:
    """The profile to run: ``requested``, or for ``auto`` the one the GPU's memory allows.

    ``total_bytes`` is None without a GPU, where everything is resident in CPU memory.
    """
    if requested != "auto":
        return PROFILES[requested]
    if total_bytes is None:
        return PROFILES["resident"]
    total_gib = total_bytes / _GIB
    return next(profile for profile in PROFILES.values() if total_gib >= profile.min_total_gib)
