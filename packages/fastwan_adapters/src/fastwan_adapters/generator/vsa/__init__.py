"""Video Sparse Attention (VSA), the attention FastWan 2.2's default checkpoint was distilled with.

``choose_attention`` decides at load which attention runs (``FASTWAN_ATTENTION`` and whether
the checkpoint has compression gates) and installs VSA where it does; ``check_fast_path``
proves on the GPU, at start-up, that the compiled flex_attention path runs and agrees with
the reference, and compiles it for the production shapes so that no job pays for that.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Final, Literal

import attrs
import torch

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator.settings import GeneratorSettings
from fastwan_adapters.generator.vsa.cubes import CubeLayout
from fastwan_adapters.generator.vsa.gates import has_gates, remove_gates
from fastwan_adapters.generator.vsa.kernels import VsaImplementation, video_sparse_attention
from fastwan_adapters.generator.vsa.processor import install_vsa

__all__ = ["PRODUCTION_GRIDS", "AttentionChoice", "check_fast_path", "choose_attention"]

log = logging.getLogger(__name__)

#: The patch grids of 121 frames at 1280x704 and 704x1280, the sizes FastWan was trained at.
PRODUCTION_GRIDS: Final = ((31, 22, 40), (31, 40, 22))
#: A small grid with a partial cube on every axis, for the start-up check against the reference.
_CHECK_GRID: Final = (5, 6, 7)
#: fp32: in bf16 a one-ulp difference in a cube mean can flip a near-tied selection, so the
#: comparison would fail on good kernels; the model's dtype is compiled for the grids after.
_CHECK_DTYPE: Final = torch.float32
_CHECK_TOLERANCE: Final = 1e-3


@attrs.frozen
class AttentionChoice:
    """The self-attention that runs: ``vsa`` (with its sparsity and implementation) or ``dense``."""

    kind: Literal["vsa", "dense"]
    sparsity: float | None = None
    implementation: VsaImplementation | None = None

    def describe(self) -> str:
        if self.kind == "dense":
            return "dense"
        return f"VSA (sparsity {self.sparsity:g}, {self.implementation})"


def choose_attention(
    transformer: torch.nn.Module, settings: GeneratorSettings, device: torch.device
) -> AttentionChoice:
    """Install the attention ``settings`` and the checkpoint call for; call before placement.

    A checkpoint with gates runs VSA (``auto``, ``vsa``) or, with ``dense``, dense attention and
    a warning, its gates dropped. One without gates runs dense (``auto``, ``dense``). VSA runs
    the flex_attention fast path on CUDA and the reference on the CPU (the tiny models).

    Raises:
        ConfigError: ``FASTWAN_ATTENTION=vsa`` and the checkpoint has no gates.
    """
    gated = has_gates(transformer)
    if settings.attention == "vsa" and not gated:
        raise ConfigError(
            f"FASTWAN_ATTENTION=vsa, but FASTWAN_MODEL={settings.model!r} has no compression gates "
            "(blocks.N.to_gate_compress): it is a dense checkpoint; use FASTWAN_ATTENTION=auto or dense"
        )
    if not gated:
        return AttentionChoice("dense")
    if settings.attention == "dense":
        log.warning(
            "FASTWAN_ATTENTION=dense on FASTWAN_MODEL=%s, a checkpoint distilled with Video Sparse "
            "Attention: its videos are not what the model was trained to make (use FASTWAN_ATTENTION=auto)",
            settings.model,
        )
        remove_gates(transformer)
        return AttentionChoice("dense")
    implementation: VsaImplementation = "flex" if device.type == "cuda" else "reference"
    install_vsa(transformer, settings.vsa_sparsity, implementation)
    return AttentionChoice("vsa", settings.vsa_sparsity, implementation)


def check_fast_path(
    choice: AttentionChoice,
    *,
    heads: int,
    head_dim: int,
    device: torch.device,
    dtype: torch.dtype,
    grids: Sequence[tuple[int, int, int]] = (),
) -> None:
    """Check the fast path against the reference (fp32, small grid), then run it once per grid in
    ``grids`` in ``dtype`` (compiling it for them).

    Nothing to do unless VSA runs on flex_attention.

    Raises:
        ConfigError: the fast path cannot run here, or disagrees with the reference: never a
            silent dense fallback.
    """
    if choice.kind != "vsa" or choice.implementation != "flex" or choice.sparsity is None:
        return
    sparsity = choice.sparsity
    generator = torch.Generator(device="cpu").manual_seed(0)

    def inputs(grid: tuple[int, int, int], of: torch.dtype) -> list[torch.Tensor]:
        shape = (1, math.prod(grid), heads, head_dim)
        return [torch.randn(shape, generator=generator).to(device, of) for _ in range(4)]

    try:
        with torch.no_grad():
            sample, layout = inputs(_CHECK_GRID, _CHECK_DTYPE), CubeLayout.for_grid(_CHECK_GRID, device)
            fast = video_sparse_attention(*sample, layout=layout, sparsity=sparsity, implementation="flex")
            reference = video_sparse_attention(*sample, layout=layout, sparsity=sparsity)
            error = float((fast.float() - reference.float()).abs().max())
            for grid in grids:
                production = CubeLayout.for_grid(grid, device)
                video_sparse_attention(
                    *inputs(grid, dtype), layout=production, sparsity=sparsity, implementation="flex"
                )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    except Exception as failure:  # compile or kernel errors: the worker cannot serve VSA here
        first = str(failure).strip().splitlines()[0][:300] if str(failure).strip() else ""
        raise ConfigError(
            f"FASTWAN_ATTENTION: Video Sparse Attention's fast path (compiled flex_attention) cannot run on "
            f"{device} with torch {torch.__version__}: {type(failure).__name__}: {first}"
        ) from failure
    if not error <= _CHECK_TOLERANCE:
        raise ConfigError(
            f"FASTWAN_ATTENTION: Video Sparse Attention's fast path disagrees with the reference on {device} "
            f"(max error {error:.3g}, tolerance {_CHECK_TOLERANCE:g}); refusing to serve wrong videos"
        )
    log.info(
        "VSA fast path checked against the reference (max error %.2g) and compiled for %d shapes",
        error,
        len(grids),
    )
