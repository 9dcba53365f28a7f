"""The full Wan 2.2 VAE decode, chunk by chunk, with the numerics of diffusers' own.

``AutoencoderKLWan._decode`` is already a loop: the decoder is causal and runs one latent
frame at a time (one video frame for the first, four for each after), carrying a feature
cache (``_feat_map``) from one call to the next; it only concatenates the pieces at the end.
:func:`decode_chunks` runs the same loop, with the same calls on the same tensors, and hands
each latent frame's video frames out as uint8 as soon as they exist, so the float video never
exists whole and a stop can land between two calls. The frames are equal to those of
``vae.decode`` (a test holds them to it), because every operation after the decoder
(unpatchify, clamp, conversion) is per element.

In the tiled profile (``cpu-offload``, ``vae.enable_tiling()``, for 10-16 GB cards) diffusers
decodes tile by tile, each tile through every frame with a feature cache of its own, and
blends neighbouring tiles at the end. Interleaving tiles per frame would keep every tile's
cache on the GPU at once (more than the untiled cache: the tiles overlap), which is what
tiling is there to avoid. So the tiled decode keeps diffusers' order and bounds the GPU
instead: each tile's decoded frames move to CPU memory as they are made (the GPU holds one
tile's cache and activations, nothing more), and once the last tile is done the blend,
clamp and conversion run on the CPU a few frames at a time, chunk by chunk into the encoder.
The encoder overlaps the blending there, not the decode; a stop still lands between two
decoder calls.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final, cast

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan, unpatchify

from fastwan_adapters.generator.pictures import to_uint8_frames

__all__ = ["configure_full_decoder", "decode_chunks", "is_tiled"]

log = logging.getLogger(__name__)

_CPU: Final = torch.device("cpu")
#: Latent frames blended and converted at once after a tiled decode (1 + 4 x 3 video frames).
_TILED_CHUNK_LATENTS: Final = 4


def configure_full_decoder(
    vae: AutoencoderKLWan, *, channels_last: bool, cudnn_benchmark: bool, compile_decoder: bool
) -> None:
    """The full decoder's speed settings (``FASTWAN_VAE_CHANNELS_LAST``, ``FASTWAN_CUDNN_BENCHMARK``,
    ``FASTWAN_VAE_COMPILE``); none changes a frame beyond bf16 rounding."""
    if channels_last:
        # Only the decoder's 3-D convolution weights (``Module.to`` refuses its other, lower-rank
        # parameters); the encoder (the I2V first frame) keeps its layout.
        for module in (vae.post_quant_conv, vae.decoder):
            for parameter in module.parameters():
                if parameter.ndim == 5:
                    parameter.data = parameter.data.contiguous(memory_format=torch.channels_last_3d)
    if cudnn_benchmark:
        torch.backends.cudnn.benchmark = True  # process-wide; decode shapes repeat per job size
    if compile_decoder:
        # In place, so that the state dict and every caller are unchanged; the first frame
        # (``first_chunk``, an empty cache) and the rest compile separately, in the warm-up.
        vae.decoder.compile(dynamic=True)
    log.info(
        "full VAE decoder: channels_last_3d %s, cuDNN benchmark %s, compiled %s",
        *("on" if flag else "off" for flag in (channels_last, cudnn_benchmark, compile_decoder)),
    )


def is_tiled(vae: AutoencoderKLWan, latents: torch.Tensor) -> bool:
    """Whether diffusers would decode ``latents`` in tiles (its own test, in ``_decode``)."""
    height, width = latents.shape[-2:]
    ratio = cast(int, vae.spatial_compression_ratio)  # diffusers: int | None; an int in every Wan VAE
    return bool(
        vae.use_tiling
        and (width > vae.tile_sample_min_width // ratio or height > vae.tile_sample_min_height // ratio)
    )


def decode_chunks(
    vae: AutoencoderKLWan,
    latents: torch.Tensor,
    *,
    bf16: bool,
    check: Callable[[], None],
) -> Iterator[np.ndarray]:
    """``(n, H, W, 3)`` uint8 chunks of the video ``latents`` (scaled as ``vae.decode`` takes them).

    ``check`` is called before every decoder call (``events.check_cancelled``); ``bf16``
    runs the decoder under bf16 autocast, as the batch decode did.
    """
    autocast: Callable[[], AbstractContextManager[Any]] = (
        (lambda: torch.autocast(latents.device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    )
    if is_tiled(vae, latents):
        yield from _tiled(vae, latents, autocast, check)
    else:
        yield from _untiled(vae, latents, autocast, check)


def _finish(vae: AutoencoderKLWan, out: torch.Tensor) -> np.ndarray:
    # diffusers types ``config`` as a dict: it is a FrozenDict, its keys attributes too.
    if cast(Any, vae.config).patch_size is not None:
        out = unpatchify(out, patch_size=cast(Any, vae.config).patch_size)
    return to_uint8_frames(torch.clamp(out, min=-1.0, max=1.0))


@torch.no_grad()
def _untiled(
    vae: AutoencoderKLWan,
    z: torch.Tensor,
    autocast: Callable[[], AbstractContextManager[Any]],
    check: Callable[[], None],
) -> Iterator[np.ndarray]:
    vae.clear_cache()
    try:
        with autocast():
            x = vae.post_quant_conv(z)
        for index in range(z.shape[2]):
            check()
            vae._conv_idx = [0]
            with autocast():
                out = vae.decoder(
                    x[:, :, index : index + 1, :, :],
                    feat_cache=vae._feat_map,
                    feat_idx=vae._conv_idx,
                    first_chunk=index == 0,
                )
            yield _finish(vae, out)
            del out
    finally:
        vae.clear_cache()


@torch.no_grad()
def _tiled(
    vae: AutoencoderKLWan,
    z: torch.Tensor,
    autocast: Callable[[], AbstractContextManager[Any]],
    check: Callable[[], None],
) -> Iterator[np.ndarray]:
    """diffusers' ``tiled_decode``, its tiles parked in CPU memory, blended a few frames at a time."""
    _, _, num_frames, height, width = z.shape
    ratio, patch = cast(int, vae.spatial_compression_ratio), cast(Any, vae.config).patch_size
    latent_min_h, latent_min_w = vae.tile_sample_min_height // ratio, vae.tile_sample_min_width // ratio
    latent_stride_h, latent_stride_w = (
        vae.tile_sample_stride_height // ratio,
        vae.tile_sample_stride_width // ratio,
    )
    sample_h, sample_w = height * ratio, width * ratio
    stride_h, stride_w = vae.tile_sample_stride_height, vae.tile_sample_stride_width
    min_h, min_w = vae.tile_sample_min_height, vae.tile_sample_min_width
    if patch is not None:
        sample_h, sample_w, stride_h, stride_w = (
            v // patch for v in (sample_h, sample_w, stride_h, stride_w)
        )
        min_h, min_w = min_h // patch, min_w // patch
    blend_h, blend_w = min_h - stride_h, min_w - stride_w

    rows: list[list[torch.Tensor]] = []
    try:
        for i in range(0, height, latent_stride_h):
            row = []
            for j in range(0, width, latent_stride_w):
                vae.clear_cache()
                frames = []
                for k in range(num_frames):
                    check()
                    vae._conv_idx = [0]
                    tile = z[:, :, k : k + 1, i : i + latent_min_h, j : j + latent_min_w]
                    with autocast():
                        tile = vae.post_quant_conv(tile)
                        decoded = vae.decoder(
                            tile, feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=k == 0
                        )
                    frames.append(decoded.to(_CPU))
                row.append(torch.cat(frames, dim=2))
            rows.append(row)
    finally:
        vae.clear_cache()

    # Latent frame k decodes to video frames [0] (k = 0) or [4k - 3, 4k]: chunk boundaries in
    # video frames, each several latent frames' worth.
    bounds = [0, *(4 * k - 3 for k in range(1 + _TILED_CHUNK_LATENTS, num_frames, _TILED_CHUNK_LATENTS))]
    total = rows[0][0].shape[2]
    bounds.append(total)
    for start, stop in itertools.pairwise(bounds):
        # Views: blend_v and blend_h write into the tile they are given, as in diffusers,
        # and the order below is diffusers' own, so every frame is blended exactly as there.
        parts = [[tile[:, :, start:stop] for tile in row] for row in rows]
        result_rows = []
        for i, row in enumerate(parts):
            result_row = []
            for j, part in enumerate(row):
                tile = part
                if i > 0:
                    tile = vae.blend_v(parts[i - 1][j], tile, blend_h)
                if j > 0:
                    tile = vae.blend_h(row[j - 1], tile, blend_w)
                result_row.append(tile[:, :, :, :stride_h, :stride_w])
            result_rows.append(torch.cat(result_row, dim=-1))
        yield _finish(vae, torch.cat(result_rows, dim=3)[:, :, :, :sample_h, :sample_w])
