"""The compression gates of a VSA checkpoint: read from its safetensors, attached to the blocks.

FastWan's sparse checkpoint stores one extra linear layer per block, at block level:
``blocks.{i}.to_gate_compress.{weight,bias}``. diffusers' ``WanTransformer3DModel`` has no
such layer and drops those weights on load, so they are read here, straight from the
transformer's safetensors (one file, or shards listed in an index), and attached to each
block as ``block.to_gate_compress``: a module of the transformer, in its dtype, so that
placement moves it and group offloading streams it like every other layer, and the
transformer's ``state_dict`` names it exactly as the checkpoint does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import torch
from safetensors import safe_open

from fastwan_adapters.generator.errors import ModelUnavailableError

__all__ = ["GATE_KEY", "attach_gates", "has_gates", "read_gate_weights", "remove_gates"]

#: A gate weight's name in the checkpoint.
GATE_KEY: Final = re.compile(r"blocks\.(\d+)\.to_gate_compress\.(weight|bias)")
_GATE: Final = "to_gate_compress"
_INDEX: Final = "diffusion_pytorch_model.safetensors.index.json"
_SINGLE: Final = "diffusion_pytorch_model.safetensors"


def read_gate_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every ``blocks.N.to_gate_compress.*`` tensor in the transformer folder's safetensors."""
    found: dict[str, torch.Tensor] = {}
    for path, names in _files_and_names(folder).items():
        with safe_open(str(path), framework="pt") as handle:
            for name in names if names is not None else handle.keys():
                if GATE_KEY.fullmatch(name):
                    found[name] = handle.get_tensor(name)
    return found


def attach_gates(transformer: torch.nn.Module, weights: dict[str, torch.Tensor], *, model: str) -> bool:
    """Attach the gates in ``weights`` to ``transformer``'s blocks; False when there are none.

    Raises:
        ModelUnavailableError: gates for only some blocks (or only weights or only biases),
            or of the wrong shape: a checkpoint like that is neither sparse nor dense.
    """
    if not weights:
        return False
    blocks: Any = transformer.blocks  # torch types a module attribute as Tensor | Module
    expected = {f"blocks.{i}.{_GATE}.{part}" for i in range(len(blocks)) for part in ("weight", "bias")}
    missing, extra = sorted(expected - weights.keys()), sorted(weights.keys() - expected)
    if missing or extra:
        unexpected = f"; unexpected {_short(extra)}" if extra else ""
        raise ModelUnavailableError(
            f"FASTWAN_MODEL={model!r}: the transformer has compression gates (to_gate_compress) for only "
            f"some of its {len(blocks)} blocks (missing {_short(missing)}{unexpected}); a VSA checkpoint "
            "has one per block, a dense one none"
        )
    for index, block in enumerate(blocks):
        weight, bias = weights[f"blocks.{index}.{_GATE}.weight"], weights[f"blocks.{index}.{_GATE}.bias"]
        dim, inner = block.attn1.to_q.in_features, block.attn1.inner_dim
        if tuple(weight.shape) != (inner, dim) or tuple(bias.shape) != (inner,):
            raise ModelUnavailableError(
                f"FASTWAN_MODEL={model!r}: blocks.{index}.{_GATE} is shaped {tuple(weight.shape)} + "
                f"{tuple(bias.shape)}, the block needs ({inner}, {dim}) + ({inner},)"
            )
        reference = block.attn1.to_q.weight
        gate = torch.nn.Linear(dim, inner, bias=True, device=reference.device, dtype=reference.dtype)
        with torch.no_grad():
            gate.weight.copy_(weight)
            gate.bias.copy_(bias)
        gate.requires_grad_(False)
        block.add_module(_GATE, gate.eval())
    return True


def has_gates(transformer: torch.nn.Module) -> bool:
    return all(hasattr(block, _GATE) for block in transformer.blocks)  # type: ignore[union-attr]


def remove_gates(transformer: torch.nn.Module) -> None:
    """Drop the gates (a dense run never uses them: 30 x 3072^2 weights, 0.5 GiB in bf16)."""
    for block in transformer.blocks:  # type: ignore[union-attr]
        if hasattr(block, _GATE):
            delattr(block, _GATE)


def _files_and_names(folder: Path) -> dict[Path, list[str] | None]:
    """The safetensors files to read, each with the gate names it holds (None: look inside)."""
    index = folder / _INDEX
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text()).get("weight_map", {})
        files: dict[Path, list[str] | None] = {}
        for name, file in weight_map.items():
            if GATE_KEY.fullmatch(name):
                listed = files.setdefault(folder / file, [])
                assert listed is not None
                listed.append(name)
        return files
    if (folder / _SINGLE).is_file():
        return {folder / _SINGLE: None}
    return {}


def _short(names: list[str], shown: int = 4) -> str:
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")
