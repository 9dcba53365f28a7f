"""The tiny model: Wan 2.2 TI2V's layout with random weights, built locally, never downloaded.

It exists so that the whole generator (the loading path, both pipelines, the distilled
sampling, the stages and the failure handling) runs in tests and on machines without a GPU.
Its output is noise. It is saved with ``save_pretrained`` like any diffusers checkpoint and
loaded by the same code as the real model; its ``model_index.json`` even names the
``WanDMDPipeline`` class diffusers lacks, as FastWan's does.

``tiny-sparse`` is the same model plus random, non-zero VSA compression gates stored exactly
as FastWan stores them: ``blocks.N.to_gate_compress.{weight,bias}`` at block level in the
transformer's safetensors, where diffusers' own loader ignores them and ours picks them up.

It is ``random_model``'s small size (the full-size one is the GPU bench's), built the same
way: deterministically, once per folder (``FASTWAN_TINY_DIR``), aside and then renamed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastwan_adapters.generator.model_folder import ensure_model, write_model
from fastwan_adapters.generator.random_model import TINY_SIZE

__all__ = ["TINY_SEED", "build_tiny_model", "ensure_tiny_model"]

TINY_SEED: Final = 0


def ensure_tiny_model(folder: Path, *, sparse: bool = False) -> Path:
    """The tiny model (with gates if ``sparse``) in ``folder``, built there first if it is not already.

    Raises:
        ConfigError: ``folder`` holds something else (``FASTWAN_TINY_DIR`` names it).
    """
    return ensure_model(folder, TINY_SIZE, seed=TINY_SEED, sparse=sparse, owner="FASTWAN_TINY_DIR")


def build_tiny_model(folder: Path, *, sparse: bool = False) -> None:
    """Write the tiny random-weight checkpoint to ``folder`` (diffusers layout), with gates if ``sparse``."""
    write_model(folder, TINY_SIZE, seed=TINY_SEED, sparse=sparse)
