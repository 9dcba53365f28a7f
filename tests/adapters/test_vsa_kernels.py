"""Video Sparse Attention's arithmetic: the cube layout, the compressed branch, the selection, both paths.

The reference works in raster order with an explicit token mask and never uses the padded
layout, so checking the flex_attention fast path (compiled, here on the CPU) against it checks
the tiling, the block lists and the ``mask_mod`` together.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator.vsa import AttentionChoice, check_fast_path
from fastwan_adapters.generator.vsa.cubes import CubeLayout
from fastwan_adapters.generator.vsa.kernels import (
    compressed_attention,
    cube_means,
    reference_attention,
    select_cubes,
    topk_count,
    video_sparse_attention,
)

sides = st.integers(min_value=1, max_value=9)


def qkvg(grid: tuple[int, int, int], heads: int = 2, dim: int = 16, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, math.prod(grid), heads, dim, generator=generator) for _ in range(4)]


def brute_cube(grid: tuple[int, int, int]) -> list[int]:
    """The spec's formula, token by token in raster order."""
    _, rows, columns = grid
    nh, nw = math.ceil(rows / 4), math.ceil(columns / 4)
    return [
        ((t // 4) * nh + h // 4) * nw + w // 4
        for t in range(grid[0])
        for h in range(rows)
        for w in range(columns)
    ]


@settings(max_examples=60, deadline=None)
@given(sides, sides, sides)
def test_tiling_round_trips_with_partial_cubes_on_every_axis(t: int, h: int, w: int) -> None:
    grid = (t, h, w)
    layout = CubeLayout.for_grid(grid)
    x = torch.randn(2, math.prod(grid), 3, 5)
    tiled = layout.tile(x)
    assert tiled.shape == (2, 3, layout.num_cubes * 64, 5)
    assert torch.equal(layout.untile(tiled), x)
    assert torch.all(tiled[:, :, ~layout.real_slot] == 0)
    assert layout.cube_of_token.tolist() == brute_cube(grid)
    assert layout.counts.tolist() == [Counter(brute_cube(grid))[c] for c in range(layout.num_cubes)]
    assert int(layout.real_slot.sum()) == math.prod(grid) and int(layout.counts.min()) >= 1
    # a token's slot lies in its cube's 64 slots
    assert torch.equal(layout.slot_of_token // 64, layout.cube_of_token)


def test_the_production_grid_has_the_cubes_the_spec_counts() -> None:
    layout = CubeLayout.for_grid((31, 22, 40))
    assert layout.cubes == (8, 6, 10) and layout.num_cubes == 480 and layout.num_tokens == 27_280
    assert Counter(layout.counts.tolist()) == {64: 350, 48: 50, 32: 70, 24: 10}
    assert topk_count(480, 0.8) == 96


def test_cube_means_are_means_over_real_tokens_only() -> None:
    grid = (5, 6, 7)
    layout = CubeLayout.for_grid(grid)
    x = torch.randn(1, math.prod(grid), 2, 4) + 3.0  # far from zero: counting padding would show
    means = cube_means(layout.tile(x), layout.counts)
    cubes = torch.tensor(brute_cube(grid))
    for cube in range(layout.num_cubes):
        expected = x[:, cubes == cube].mean(dim=1)  # (1, heads, D)
        assert torch.allclose(means[:, :, cube], expected, atol=1e-6)


@pytest.mark.parametrize(
    ("cubes", "sparsity", "expected"),
    [(480, 0.8, 96), (480, 0.0, 480), (480, 0.999, 1), (1, 0.8, 1), (7, 0.5, 4), (10, 0.95, 1)],
)
def test_topk_count_is_ceil_of_the_kept_share_clamped(cubes: int, sparsity: float, expected: int) -> None:
    assert topk_count(cubes, sparsity) == expected


def test_selection_takes_the_highest_scores_and_breaks_ties_to_the_lower_cube() -> None:
    scores = torch.tensor([[[[0.5, 0.9, 0.9, 0.1, 0.9], [1.0, 1.0, 1.0, 1.0, 1.0]]]])
    selected = select_cubes(scores, 2)
    assert selected[0, 0, 0].tolist() == [False, True, True, False, False]  # 0.9 x3: cubes 1, 2 win
    assert selected[0, 0, 1].tolist() == [True, True, False, False, False]  # all equal: 0 and 1
    assert selected.sum(-1).eq(2).all()


def test_selection_does_not_force_the_query_cube_itself() -> None:
    scores = torch.tensor([[[[0.0, 5.0, 1.0], [5.0, 0.0, 1.0], [5.0, 1.0, 0.0]]]])
    assert select_cubes(scores, 1)[0, 0].diagonal().sum() == 0


def dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    )
    return out.transpose(1, 2)


@pytest.mark.parametrize("implementation", ["reference", "flex"])
def test_at_sparsity_zero_with_zero_gates_vsa_is_dense_attention(implementation: str) -> None:
    grid = (5, 6, 7)
    q, k, v, _ = qkvg(grid)
    layout, gate = CubeLayout.for_grid(grid), torch.zeros_like(v)
    out = video_sparse_attention(q, k, v, gate, layout=layout, sparsity=0.0, implementation=implementation)  # type: ignore[arg-type]
    assert torch.allclose(out, dense(q, k, v), atol=1e-5)


def test_at_sparsity_zero_the_gate_still_adds_the_compressed_branch() -> None:
    grid = (4, 4, 8)
    q, k, v, g = qkvg(grid)
    layout = CubeLayout.for_grid(grid)
    out = reference_attention(q, k, v, g, layout=layout, sparsity=0.0)
    out_c, _ = compressed_attention(*(cube_means(layout.tile(x), layout.counts) for x in (q, k, v)))
    expected = out_c.transpose(1, 2)[:, layout.cube_of_token] * g + dense(q, k, v)
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("implementation", ["reference", "flex"])
def test_sparse_attention_sees_only_the_selected_cubes(implementation: str) -> None:
    """Every query prefers cube 0; cube 1's values are huge and would show if any query saw them."""
    grid = (4, 4, 8)  # two whole cubes, topk = 1 at sparsity 0.5
    layout = CubeLayout.for_grid(grid)
    direction = torch.ones(1, math.prod(grid), 2, 16)
    side = torch.where(layout.cube_of_token == 0, 1.0, -1.0).view(1, -1, 1, 1)
    v = torch.where(side > 0, 1.0, 1e4).expand(1, -1, 2, 16)
    gate, keys = torch.zeros_like(v), direction * side
    out = video_sparse_attention(
        direction,
        keys,
        v,
        gate,
        layout=layout,
        sparsity=0.5,
        implementation=implementation,  # type: ignore[arg-type]
    )
    assert torch.allclose(out, torch.ones_like(out))


@pytest.mark.parametrize(
    ("grid", "sparsity"),
    [((5, 6, 7), 0.5), ((3, 9, 2), 0.8), ((8, 4, 4), 0.0), ((9, 5, 3), 0.3)],
)
def test_the_compiled_flex_path_equals_the_reference(grid: tuple[int, int, int], sparsity: float) -> None:
    q, k, v, g = qkvg(grid, seed=sum(grid))
    layout = CubeLayout.for_grid(grid)
    fast = video_sparse_attention(q, k, v, g, layout=layout, sparsity=sparsity, implementation="flex")
    reference = video_sparse_attention(q, k, v, g, layout=layout, sparsity=sparsity)
    assert torch.allclose(fast, reference, atol=1e-5), float((fast - reference).abs().max())


def test_the_startup_check_passes_a_fast_path_that_agrees_and_compiles_the_grids() -> None:
    choice = AttentionChoice("vsa", 0.8, "flex")
    check_fast_path(
        choice, heads=2, head_dim=16, device=torch.device("cpu"), dtype=torch.float32, grids=[(3, 4, 5)]
    )


def test_the_startup_check_refuses_a_fast_path_that_disagrees_or_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fastwan_adapters.generator.vsa as vsa

    real = vsa.video_sparse_attention
    choice = AttentionChoice("vsa", 0.8, "flex")
    check = {"heads": 2, "head_dim": 16, "device": torch.device("cpu"), "dtype": torch.float32}

    def wrong(*args: Any, implementation: str = "reference", **kwargs: Any) -> torch.Tensor:
        out = real(*args, implementation="reference", **kwargs)
        return out + 0.1 if implementation == "flex" else out

    monkeypatch.setattr(vsa, "video_sparse_attention", wrong)
    with pytest.raises(ConfigError, match=r"FASTWAN_ATTENTION: .*fast path disagrees with the reference"):
        check_fast_path(choice, **check)

    def broken(*args: Any, implementation: str = "reference", **kwargs: Any) -> torch.Tensor:
        if implementation == "flex":
            raise RuntimeError("no kernel for this GPU")
        return real(*args, **kwargs)

    monkeypatch.setattr(vsa, "video_sparse_attention", broken)
    with pytest.raises(ConfigError, match=r"fast path .* cannot run on cpu .*RuntimeError: no kernel"):
        check_fast_path(choice, **check)
    check_fast_path(AttentionChoice("dense"), **check)  # nothing to check for dense attention


def test_the_reference_gives_the_same_answer_in_query_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastwan_adapters.generator.vsa.kernels as kernels

    grid = (5, 8, 9)  # 360 tokens, in chunks of 100 (the last one short)
    q, k, v, g = qkvg(grid, heads=2, dim=8)
    layout = CubeLayout.for_grid(grid)
    whole = reference_attention(q, k, v, g, layout=layout, sparsity=0.5)
    monkeypatch.setattr(kernels, "_REFERENCE_ROWS", 100)
    assert torch.allclose(reference_attention(q, k, v, g, layout=layout, sparsity=0.5), whole, atol=1e-6)
