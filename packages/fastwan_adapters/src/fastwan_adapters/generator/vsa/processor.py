"""VSA inside diffusers' Wan transformer: an attention processor for every block's self-attention.

The processor does what diffusers' ``WanAttnProcessor`` does for self-attention, in the same
order (``q = norm_q(to_q(x))``, ``k = norm_k(to_k(x))``, ``v = to_v(x)``, heads split, rotary
embedding on q and k in raster order), computes the block's compression gate
``g = to_gate_compress(x)`` beside them, and replaces the dense attention with VSA; heads are
then flattened and ``to_out`` applied, so the gate combine happens before ``to_out``.
Cross-attention to the text (``attn2``) keeps diffusers' dense processor.

The attention needs the patch grid ``(T, H, W)``, which the processor's arguments do not
carry: a forward pre-hook on the transformer records its cube layout, from the latents'
shape, into a :class:`PatchGrid` the processors share. Outside the blocks, so that with
``TORCH_COMPILE=1`` the compiled blocks only read it.
"""

from __future__ import annotations

from typing import Any, cast

import attrs
import torch

from fastwan_adapters.generator.vsa.cubes import CubeLayout
from fastwan_adapters.generator.vsa.kernels import VsaImplementation, video_sparse_attention

__all__ = ["PatchGrid", "VsaAttnProcessor", "install_vsa"]


@attrs.define
class PatchGrid:
    """The cube layout of the transformer call in progress (one call at a time per transformer)."""

    layout: CubeLayout | None = None

    def require(self) -> CubeLayout:
        if self.layout is None:
            raise RuntimeError("VSA called outside a transformer forward: the patch grid is unknown")
        return self.layout


class VsaAttnProcessor:
    """Self-attention with Video Sparse Attention and the block's compression gate."""

    # diffusers sets these on every processor (``set_attention_backend``); VSA ignores them.
    _attention_backend = None
    _parallel_config = None

    def __init__(
        self, gate: torch.nn.Module, grid: PatchGrid, sparsity: float, implementation: VsaImplementation
    ) -> None:
        self.gate = gate
        self.grid = grid
        self.sparsity = sparsity
        self.implementation = implementation

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise RuntimeError("VSA runs in self-attention only, without a mask")
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        gate = self.gate(hidden_states).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query, key = _rotate(query, *rotary_emb), _rotate(key, *rotary_emb)
        out = video_sparse_attention(
            query,
            key,
            value,
            gate,
            layout=self.grid.require(),
            sparsity=self.sparsity,
            implementation=self.implementation,
        )
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))  # type: ignore[no-any-return]


def install_vsa(
    transformer: torch.nn.Module, sparsity: float, implementation: VsaImplementation
) -> PatchGrid:
    """Give every block's ``attn1`` a VSA processor using that block's ``to_gate_compress``."""
    grid = PatchGrid()
    patch = tuple(cast(Any, transformer.config).patch_size)

    def record_grid(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        latents = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        frames, height, width = latents.shape[-3:]
        shape = (frames // patch[0], height // patch[1], width // patch[2])
        grid.layout = CubeLayout.for_grid(shape, latents.device)

    transformer.register_forward_pre_hook(record_grid, with_kwargs=True)
    for block in transformer.blocks:  # type: ignore[union-attr]
        block.attn1.set_processor(VsaAttnProcessor(block.to_gate_compress, grid, sparsity, implementation))
    return grid


def _rotate(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on interleaved channel pairs, as in diffusers' ``WanAttnProcessor``."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)
