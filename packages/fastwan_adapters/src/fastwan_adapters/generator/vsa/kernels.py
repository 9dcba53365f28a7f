"""Video Sparse Attention itself: one function, a dense masked reference and a flex_attention fast path.

What is computed follows ``shared/spec/vsa.md`` (FastVideo's ``video_sparse_attn``): per head,
the cube means of q, k and v (real tokens only, summed in fp32) give a compressed attention
``out_c`` over cubes and its scores; each query cube keeps the ``topk`` key cubes with the
highest scores (ties to the lower index); ``out_s`` is ordinary attention of each query over
the real tokens of its cube's selected key cubes; the result is ``out_c * gate + out_s``.

- :func:`reference_attention` works in raster order with an explicit token mask and never
  touches the padded layout: it is the tests' oracle, independent of the tiling code.
  Memory grows with S^2 per head (one head at a time): fine for tests and the benchmark.
- :func:`flex_attention_fast` tiles into the cube layout and runs PyTorch's flex_attention
  with a ``BlockMask`` made from the selected cubes, compiled with ``torch.compile``. Whole
  cubes go in the mask's *full* block lists (no mask evaluated); partial cubes go in the
  partial lists, and the ``mask_mod`` itself looks the selection and the real slots up:
  the block lists alone are only an optimisation (eager flex_attention ignores them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Final, Literal

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from fastwan_adapters.generator.vsa.cubes import CUBE_TOKENS, CubeLayout, tile_tokens, untile_tokens

__all__ = [
    "VsaImplementation",
    "compressed_attention",
    "cube_means",
    "flex_attention_fast",
    "reference_attention",
    "select_cubes",
    "topk_count",
    "video_sparse_attention",
]

VsaImplementation = Literal["reference", "flex"]

_NEG_INF: Final = float("-inf")
#: Queries the reference takes at once (its logits: rows x S fp32 per head).
_REFERENCE_ROWS: Final = 2048
#: Distinct cube counts one process may compile the fast path for.
_RECOMPILE_LIMIT: Final = 64


def topk_count(num_cubes: int, sparsity: float) -> int:
    """Key cubes each query cube attends to: ``clamp(ceil((1 - s) * N), 1, N)`` (FastVideo's rule)."""
    return max(1, min(math.ceil((1 - sparsity) * num_cubes), num_cubes))


def cube_means(x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``(B, heads, N * 64, D)`` tiled and zero-padded to ``(B, heads, N, D)`` means over real tokens.

    Summed in fp32 over the 64 slots (padding adds zeros) and divided by the real count, then
    returned in ``x``'s dtype, as FastVideo does.
    """
    batch, heads, _, dim = x.shape
    sums = x.view(batch, heads, -1, CUBE_TOKENS, dim).float().sum(dim=3)
    return (sums / counts.view(1, 1, -1, 1).to(sums.dtype)).to(x.dtype)


def compressed_attention(
    q_c: torch.Tensor, k_c: torch.Tensor, v_c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention between cube means: ``(out_c, scores)``, scores ``(B, heads, N, N)``, unmasked."""
    scores = (q_c @ k_c.transpose(-1, -2)) / math.sqrt(q_c.shape[-1])
    return scores.softmax(dim=-1) @ v_c, scores


def select_cubes(scores: torch.Tensor, topk: int) -> torch.Tensor:
    """``(B, heads, N, N)`` scores to a boolean selection of the ``topk`` best key cubes per query cube.

    A stable descending sort: among equal scores the lower cube index wins, on every device
    (``torch.topk`` promises no order for ties).
    """
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :topk]
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, order, True)


@torch.compiler.disable  # type: ignore[untyped-decorator]  # unannotated in torch
def video_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gate: torch.Tensor,
    *,
    layout: CubeLayout,
    sparsity: float,
    implementation: VsaImplementation = "reference",
) -> torch.Tensor:
    """VSA over ``(B, S, heads, D)`` tensors in raster order; returns ``(B, S, heads, D)``.

    ``layout`` is the cube layout of the patch grid (``S`` tokens, on the tensors' device);
    ``gate`` is the compression gate's output, shaped like ``v``. Never traced into a caller's
    compiled graph (``TORCH_COMPILE=1`` compiles the blocks around it): the fast path compiles
    its flex_attention itself, with static shapes, as tested.
    """
    if implementation == "flex":
        return flex_attention_fast(q, k, v, gate, layout=layout, sparsity=sparsity)
    if implementation == "reference":
        return reference_attention(q, k, v, gate, layout=layout, sparsity=sparsity)
    raise ValueError(f"unknown VSA implementation {implementation!r}")


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gate: torch.Tensor,
    *,
    layout: CubeLayout,
    sparsity: float,
) -> torch.Tensor:
    """VSA as a dense masked computation in raster order (the oracle, and the CPU's path).

    One head and up to ``_REFERENCE_ROWS`` queries at a time, so that memory stays at a few
    hundred MB even at the production size (27,280 tokens) on a CPU smoke run.
    """
    batch, _, heads, dim = q.shape
    cube = layout.cube_of_token
    counts = layout.counts.view(1, 1, -1, 1)

    def means(x: torch.Tensor) -> torch.Tensor:  # (B, S, heads, D) -> (B, heads, N, D), fp32 sums
        sums = x.new_zeros(batch, layout.num_cubes, heads, dim, dtype=torch.float32)
        sums.index_add_(1, cube, x.float())
        return (sums.transpose(1, 2) / counts).to(x.dtype)

    out_c, scores = compressed_attention(means(q), means(k), means(v))
    selected = select_cubes(scores, topk_count(layout.num_cubes, sparsity))
    out_s = torch.empty_like(q)
    scale = 1 / math.sqrt(dim)
    for head in range(heads):
        keys, values = k[:, :, head].float().transpose(-1, -2), v[:, :, head].float()
        for start in range(0, q.shape[1], _REFERENCE_ROWS):
            rows = slice(start, start + _REFERENCE_ROWS)
            allowed = selected[:, head][:, cube[rows]][:, :, cube]  # query token -> key token
            logits = (q[:, rows, head].float() @ keys) * scale
            weights = logits.masked_fill(~allowed, _NEG_INF).softmax(dim=-1)
            out_s[:, rows, head] = (weights @ values).to(q.dtype)
    spread = out_c.transpose(1, 2)[:, cube]  # every token gets its cube's compressed output
    return spread * gate + out_s


def flex_attention_fast(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gate: torch.Tensor,
    *,
    layout: CubeLayout,
    sparsity: float,
) -> torch.Tensor:
    """VSA with compiled flex_attention over the cube layout (the production path on CUDA).

    Two compiled stages, so that the compiler fuses the layout moves and the small ops
    around the kernel: the selection, then the attention over it and the combine. The
    selection crosses between them as an input: a mask buffer computed inside the graph
    that also runs flex_attention gave wrong results (seen with torch 2.13's CPU lowering),
    while inputs are the pattern flex_attention is built for.
    """
    topk = topk_count(layout.num_cubes, sparsity)
    q_t, k_t, v_t, out_c, selected = _compiled(_select_stage)(
        q, k, v, layout.slot_of_token, layout.counts, padded_length=layout.padded_length, topk=topk
    )
    return _compiled(_attend_stage)(  # type: ignore[no-any-return]  # torch.compile's result is Any
        q_t,
        k_t,
        v_t,
        selected,
        out_c=out_c,
        gate=gate,
        counts=layout.counts,
        real_slot=layout.real_slot,
        slot_of_token=layout.slot_of_token,
        cube_of_token=layout.cube_of_token,
    )


def _select_stage(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slot_of_token: torch.Tensor,
    counts: torch.Tensor,
    *,
    padded_length: int,
    topk: int,
) -> tuple[torch.Tensor, ...]:
    """Tile q, k and v; the compressed branch (per cube) and the selection it makes."""
    q_t, k_t, v_t = (tile_tokens(x, slot_of_token, padded_length) for x in (q, k, v))
    out_c, scores = compressed_attention(*(cube_means(x, counts) for x in (q_t, k_t, v_t)))
    return q_t, k_t, v_t, out_c, select_cubes(scores, topk)


def _attend_stage(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    selected: torch.Tensor,
    *,
    out_c: torch.Tensor,
    gate: torch.Tensor,
    counts: torch.Tensor,
    real_slot: torch.Tensor,
    slot_of_token: torch.Tensor,
    cube_of_token: torch.Tensor,
) -> torch.Tensor:
    """flex_attention over each query cube's selected key cubes, then ``out_c * gate + out_s``."""
    whole = counts == CUBE_TOKENS
    full_blocks, full_indices = _block_lists(selected & whole)
    partial_blocks, partial_indices = _block_lists(selected & ~whole)

    def visible(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return selected[b, h, q_idx // CUBE_TOKENS, kv_idx // CUBE_TOKENS] & real_slot[kv_idx]

    length = q.shape[2]
    mask = BlockMask.from_kv_blocks(
        partial_blocks,
        partial_indices,
        full_blocks,
        full_indices,
        BLOCK_SIZE=CUBE_TOKENS,
        mask_mod=visible,
        seq_lengths=(length, length),
        compute_q_blocks=False,  # inference: no backward pass needs the transposed lists
    )
    out_s: torch.Tensor = flex_attention(q, k, v, block_mask=mask)
    spread = out_c.transpose(1, 2)[:, cube_of_token]  # each token gets its cube's row
    return spread * gate + untile_tokens(out_s, slot_of_token)


def _block_lists(chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query cube: how many key cubes are chosen, and their indices first (ascending)."""
    count = chosen.sum(dim=-1, dtype=torch.int32)
    indices = torch.argsort((~chosen).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    return count, indices


@functools.cache
def _compiled(stage: Callable[..., Any]) -> Callable[..., Any]:
    """``stage`` under ``torch.compile``, built once (compiling happens per new shape).

    flex_attention only runs block-sparse when compiled: eager, it materialises the whole mask.
    Static shapes, as tested here (the CPU's flex lowering refuses dynamic ones): each cube
    count N compiles once, so dynamo's recompile limit is raised from its default of 8, past
    which it would fall back to that eager, whole-mask path.
    """
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, _RECOMPILE_LIMIT)
    return torch.compile(stage, dynamic=False)
