"""The cube layout VSA works in: the patch grid cut into 4x4x4 cubes, each padded to 64 slots.

VSA's unit is the cube: 4 latent frames x 4 x 4 patches, 64 tokens, the size of one
attention tile. ``CubeLayout`` maps the transformer's raster token order (frame, row,
column) to a padded layout where cube ``c`` owns slots ``64 c .. 64 c + 63``, so that
64-token blocks of the padded sequence are exactly the cubes (FastVideo lays tokens out
the same way). Along an axis whose length is not a multiple of 4 the last cube is partial:
its missing tokens' slots hold zeros and are marked unreal, and no arithmetic may count
them (cube means divide by the real count; keys in unreal slots are never attended).
"""

from __future__ import annotations

import functools
import math
from typing import Final

import attrs
import torch

__all__ = ["CUBE", "CUBE_TOKENS", "CubeLayout", "tile_tokens", "untile_tokens"]

#: The cube's side, in latent frames and patches.
CUBE: Final = 4
#: Slots per cube (and flex_attention's block size).
CUBE_TOKENS: Final = CUBE**3


@attrs.frozen(eq=False)
class CubeLayout:
    """Where each token of a ``(T, H, W)`` patch grid sits in the cube-by-cube padded layout.

    Attributes:
        grid: the patch grid, ``(frames, rows, columns)``.
        cubes: cubes per axis, ``ceil(side / 4)`` each.
        cube_of_token: ``(S,)`` the cube of each token, in raster order.
        slot_of_token: ``(S,)`` each token's slot in the padded sequence.
        counts: ``(N,)`` real tokens per cube (64 for whole cubes, fewer for partial ones).
        real_slot: ``(N * 64,)`` whether a padded slot holds a token.
    """

    grid: tuple[int, int, int]
    cubes: tuple[int, int, int]
    cube_of_token: torch.Tensor
    slot_of_token: torch.Tensor
    counts: torch.Tensor
    real_slot: torch.Tensor

    @classmethod
    def for_grid(cls, grid: tuple[int, int, int], device: torch.device | str = "cpu") -> CubeLayout:
        """The layout of ``grid`` on ``device`` (computed once per grid and device)."""
        return _layout(tuple(int(side) for side in grid), str(torch.device(device)))

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def num_cubes(self) -> int:
        return math.prod(self.cubes)

    @property
    def padded_length(self) -> int:
        return self.num_cubes * CUBE_TOKENS

    def tile(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, heads, D)`` in raster order to ``(B, heads, N * 64, D)`` padded with zeros."""
        if x.shape[1] != self.num_tokens:
            raise ValueError(
                f"{x.shape[1]} tokens do not fill the grid {self.grid} ({self.num_tokens} tokens)"
            )
        return tile_tokens(x, self.slot_of_token, self.padded_length)

    def untile(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, heads, N * 64, D)`` back to ``(B, S, heads, D)`` in raster order (padding dropped)."""
        return untile_tokens(y, self.slot_of_token)


def tile_tokens(x: torch.Tensor, slot_of_token: torch.Tensor, padded_length: int) -> torch.Tensor:
    """:meth:`CubeLayout.tile` on plain tensors (what compiled code is given)."""
    batch, _, heads, dim = x.shape
    padded = x.new_zeros(batch, padded_length, heads, dim)
    return padded.index_copy(1, slot_of_token, x).transpose(1, 2)


def untile_tokens(y: torch.Tensor, slot_of_token: torch.Tensor) -> torch.Tensor:
    """:meth:`CubeLayout.untile` on plain tensors."""
    return y.transpose(1, 2).index_select(1, slot_of_token)


@functools.lru_cache(maxsize=16)
def _layout(grid: tuple[int, int, int], device: str) -> CubeLayout:
    if len(grid) != 3 or min(grid) < 1:
        raise ValueError(f"a patch grid has three positive sides, got {grid}")
    frames, rows, columns = grid
    cubes = (math.ceil(frames / CUBE), math.ceil(rows / CUBE), math.ceil(columns / CUBE))
    t = torch.arange(frames).view(-1, 1, 1)
    h = torch.arange(rows).view(1, -1, 1)
    w = torch.arange(columns).view(1, 1, -1)
    cube = ((t // CUBE) * cubes[1] + h // CUBE) * cubes[2] + w // CUBE
    local = ((t % CUBE) * CUBE + h % CUBE) * CUBE + w % CUBE
    cube_of_token = cube.flatten()
    slot_of_token = (cube * CUBE_TOKENS + local).flatten()
    num_cubes = math.prod(cubes)
    counts = torch.bincount(cube_of_token, minlength=num_cubes)
    real_slot = torch.zeros(num_cubes * CUBE_TOKENS, dtype=torch.bool)
    real_slot[slot_of_token] = True
    target = torch.device(device)
    return CubeLayout(
        grid=grid,
        cubes=cubes,
        cube_of_token=cube_of_token.to(target),
        slot_of_token=slot_of_token.to(target),
        counts=counts.to(target),
        real_slot=real_slot.to(target),
    )
