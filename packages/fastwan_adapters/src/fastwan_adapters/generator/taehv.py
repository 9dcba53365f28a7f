"""The tiny Wan 2.2 video decoder (TAEHV, ``taew2_2``): about 50x less compute than the Wan VAE.

Written from the public description of madebyollin/taehv (its ``taehv.py`` model file and
README, MIT), not copied: the layer layout, names and shapes are those of that file's
``TAEHV.decoder`` for the ``taew2_2`` weights, so that the published state dict (and
LightX2V's ``lighttaew2_2``, the same architecture) loads with strict key matching:

* 48 latent channels in, 3 stages of widths 256, 128 and 64, each three ``MemBlock``s, a 2x
  nearest upsample and a ``TGrow`` (temporal x1, x2, x2: 4x in all, as the Wan VAE), then a
  convolution to 12 channels that a 2x pixel shuffle turns into RGB: 16x spatially in all.
* The input goes through ``Clamp`` (a soft ``3 tanh(x / 3)``); the output is clamped to [0, 1].
* The module decodes the latents it is given. ``taew2_2`` learned the transformer's
  (normalised) latent space, what a Wan pipeline returns with ``output_type="latent"``;
  LightX2V's ``lighttaew2_2`` the de-normalised one ``vae.decode`` takes. The caller
  (``video_decoder``) feeds each its own, as ``tiny_latents`` says.
* The decoder is causal. Each latent frame gives 4 frames; the first 3 of the first latent
  (``t_upscale - 1``) are startup frames and trimmed, so ``T`` latents give ``4 (T - 1) + 1``
  frames, as the Wan VAE.

A ``MemBlock`` sees its input of the previous frame (zeros before the first). ``decode_stream``
keeps that one frame per block between chunks, so a chunk-by-chunk decode computes what the
all-at-once ("parallel") decode computes, with memory bounded by the chunk, and a caller can
stop between chunks. ``load_tiny_decoder`` (``taehv_files``) reads the published files.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastwan_adapters.generator.pictures import to_uint8_frames

__all__ = [
    "LATENT_CHANNELS",
    "SPATIAL_SCALE",
    "TEMPORAL_SCALE",
    "TinyWanDecoder",
    "build_random_tiny_decoder",
    "frame_count",
]

LATENT_CHANNELS: Final = 48
#: Frames per latent frame and pixels per latent pixel, as the Wan 2.2 VAE.
TEMPORAL_SCALE: Final = 4
SPATIAL_SCALE: Final = 16
_WIDTHS: Final = (256, 128, 64, 64)
_TIME_STRIDES: Final = (1, 2, 2)
_PATCH: Final = 2  # pixel shuffle: the last convolution gives 3 x 2 x 2 channels
_TRIM: Final = TEMPORAL_SCALE - 1
_RANDOM_OUTPUT_GAIN: Final = 8.0


def frame_count(latent_frames: int) -> int:
    """The frames ``latent_frames`` latent frames decode to (the Wan VAE's count)."""
    return TEMPORAL_SCALE * (latent_frames - 1) + 1


def _conv(n_in: int, n_out: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    """A soft clamp of the latents to about [-3, 3], so outliers cannot blow up the decoder."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """A residual block that also sees its input of the previous frame (``past``)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(2 * width, width), nn.ReLU(), _conv(width, width), nn.ReLU(), _conv(width, width)
        )
        # Input and output widths are equal everywhere in the decoder: the skip is the identity.

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([x, past], 1)) + x)


class TGrow(nn.Module):
    """Temporal upsampling: a 1x1 convolution to ``stride`` frames' worth of channels."""

    def __init__(self, width: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(width, width * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (T, stride * C, H, W) -> (T * stride, C, H, W): frame t's j-th output is t * stride + j.
        return self.conv(x).reshape(-1, x.shape[1], *x.shape[2:])  # type: ignore[no-any-return]


class TinyWanDecoder(nn.Module):
    """The ``taew2_2`` decoder; ``state_dict`` keys are the published ``decoder.*`` keys."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [Clamp(), _conv(LATENT_CHANNELS, _WIDTHS[0]), nn.ReLU()]
        for stage, stride in enumerate(_TIME_STRIDES):
            width, narrower = _WIDTHS[stage], _WIDTHS[stage + 1]
            layers += [MemBlock(width), MemBlock(width), MemBlock(width)]
            layers += [nn.Upsample(scale_factor=2), TGrow(width, stride), _conv(width, narrower, bias=False)]
        layers += [nn.ReLU(), _conv(_WIDTHS[-1], 3 * _PATCH**2)]
        self.decoder = nn.Sequential(*layers)

    def decode_stream(self, latents: torch.Tensor, *, chunk_frames: int = 1) -> Iterator[np.ndarray]:
        """Decode ``latents`` ``(1, 48, T, h, w)`` as uint8 RGB chunks ``(n, 16 h, 16 w, 3)``, in order.

        Their concatenation is the whole video, ``4 (T - 1) + 1`` frames. Each chunk is
        ``chunk_frames`` latent frames (4 frames each; the first chunk 3 fewer); any chunking
        gives the same frames as decoding all at once, up to floating-point summation order.
        Runs under ``torch.no_grad`` on the module's device and dtype; between two chunks
        only one frame per ``MemBlock`` is kept, and the caller may stop at any yield.

        Raises:
            ValueError: ``latents`` is not shaped as one clip of 48-channel latents.
        """
        if latents.ndim != 5 or latents.shape[0] != 1 or latents.shape[1] != LATENT_CHANNELS:
            raise ValueError(
                f"latents must be shaped (1, {LATENT_CHANNELS}, frames, height, width), "
                f"got {tuple(latents.shape)}"
            )
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
        weight = cast(torch.Tensor, self.decoder[1].weight)
        memory: list[torch.Tensor | None] = [None] * len(self.decoder)
        to_trim = _TRIM
        for start in range(0, latents.shape[2], chunk_frames):
            with torch.no_grad():
                # (1, C, t, h, w) -> (t, C, h, w): TAEHV works on frames, time in the batch axis.
                chunk = latents[0, :, start : start + chunk_frames].transpose(0, 1)
                rgb = self._decode_chunk(chunk.to(weight.device, weight.dtype), memory)
                rgb, to_trim = rgb[to_trim:], 0
                # In diffusers' [-1, 1] convention, so that both decoders share one conversion.
                video = rgb.float().mul(2.0).sub(1.0).transpose(0, 1).unsqueeze(0)
                frames = to_uint8_frames(video)
            yield frames

    def _decode_chunk(self, x: torch.Tensor, memory: list[torch.Tensor | None]) -> torch.Tensor:
        """Consecutive latent frames ``(t, 48, h, w)`` to ``(4 t, 3, 16 h, 16 w)`` in [0, 1].

        ``memory[i]`` holds block ``i``'s input of the frame before this chunk, and is updated.
        """
        for index, layer in enumerate(self.decoder):
            if isinstance(layer, MemBlock):
                previous = memory[index]
                first = torch.zeros_like(x[:1]) if previous is None else previous
                past = torch.cat([first, x[:-1]])
                memory[index] = x[-1:].clone()  # a copy: a view would keep the whole chunk alive
                x = layer(x, past)
            else:
                x = layer(x)
        return F.pixel_shuffle(x, _PATCH).clamp(0.0, 1.0)


def build_random_tiny_decoder(seed: int = 0) -> TinyWanDecoder:
    """A random-weight decoder of the published layout, the same for the same ``seed``.

    For tests and CPU smoke runs (``FASTWAN_MODEL=tiny``); its frames are noise. PyTorch's
    default initialisation leaves the output near 0, which the final clamp turns into black
    frames that hide mistakes, so the last convolution is centred on grey (bias 0.5) and
    scaled up: the frames are grey noise that uses the value range. Built under
    ``torch.random.fork_rng``, so the caller's random state is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = TinyWanDecoder()
    last = cast(nn.Conv2d, decoder.decoder[-1])
    with torch.no_grad():
        last.weight.mul_(_RANDOM_OUTPUT_GAIN)
        cast(torch.Tensor, last.bias).fill_(0.5)  # built with a bias
    return decoder.eval()
