"""The random-weight models: built locally and deterministically, reused, loaded like the real checkpoint."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import attrs
import pytest
import torch
from safetensors.torch import load_file, save_file

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator import ModelUnavailableError
from fastwan_adapters.generator.architecture import TINY_TEXT_ENCODER, TINY_TRANSFORMER, TINY_VAE
from fastwan_adapters.generator.loading import load_components
from fastwan_adapters.generator.model_folder import ensure_model, is_complete
from fastwan_adapters.generator.random_model import FULL_SIZE, TINY_SIZE
from fastwan_adapters.generator.tiny import build_tiny_model, ensure_tiny_model
from fastwan_adapters.generator.vsa.gates import has_gates

_TRANSFORMER_WEIGHTS = "transformer/diffusion_pytorch_model.safetensors"


def weights_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.safetensors"))
    }


def test_the_build_is_deterministic(tiny_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(1234)  # the caller's random state must not matter...
    before = torch.rand(3)
    torch.manual_seed(1234)

    build_tiny_model(tmp_path / "again")

    assert weights_digest(tmp_path / "again") == weights_digest(tiny_dir)
    assert len(weights_digest(tiny_dir)) == 3  # transformer, text encoder, VAE
    assert torch.equal(torch.rand(3), before)  # ...and is left as it was


def test_an_existing_build_is_reused(tiny_dir: Path) -> None:
    stamps = {path: path.stat().st_mtime_ns for path in tiny_dir.rglob("*") if path.is_file()}

    assert ensure_tiny_model(tiny_dir) == tiny_dir
    assert {path: path.stat().st_mtime_ns for path in tiny_dir.rglob("*") if path.is_file()} == stamps


def test_a_foreign_folder_is_never_overwritten(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")

    with pytest.raises(ConfigError, match="FASTWAN_TINY_DIR"):
        ensure_tiny_model(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_an_outdated_build_of_ours_is_replaced(tmp_path: Path) -> None:
    old = tmp_path / "tiny"
    old.mkdir()
    (old / "fastwan-tiny.json").write_text(json.dumps({"version": 0}))
    (old / "stale.bin").write_bytes(b"old weights")

    ensure_tiny_model(old)

    assert not (old / "stale.bin").exists()
    assert (old / "transformer" / "config.json").is_file()


def test_the_checkpoint_has_the_real_layout_and_loads_through_the_real_path(tiny_dir: Path) -> None:
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "WanDMDPipeline"  # as FastWan's; diffusers has no such class

    components = load_components(tiny_dir, torch.float32, model="tiny")

    assert components.vae.config.z_dim == 48
    assert components.vae.config.patch_size == 2
    assert components.vae.config.is_residual is True
    assert components.transformer.config.in_channels == 48
    assert components.transformer.config.num_layers == 2
    tokens = components.tokenizer("a red fox", padding="max_length", max_length=512, truncation=True)
    assert len(tokens["input_ids"]) == 512
    assert tokens["input_ids"][sum(tokens["attention_mask"]) - 1] == 1  # ends with </s>
    assert tokens["input_ids"][-1] == 0  # padded with <pad>


def test_unused_checkpoint_weights_are_named_in_one_warning(
    tiny_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "extra"
    shutil.copytree(tiny_dir, copy)
    weights = load_file(copy / _TRANSFORMER_WEIGHTS)
    for block in range(2):  # not VSA's gates (those sit at block level): nothing uses these
        weights[f"blocks.{block}.attn1.to_gate_compress.weight"] = torch.zeros(24, 24)
    save_file(weights, copy / _TRANSFORMER_WEIGHTS, metadata={"format": "pt"})

    with caplog.at_level(logging.WARNING):
        load_components(copy, torch.float32, model="extra")

    warnings = [
        record.getMessage()
        for record in caplog.records
        if "not used" in record.getMessage() or "does not use" in record.getMessage()
    ]
    assert warnings == [
        "FASTWAN_MODEL=extra: the checkpoint's transformer has 2 weights the pipeline does not use, "
        "ignored: blocks.*.attn1.to_gate_compress.weight"
    ]


def test_missing_checkpoint_weights_are_a_startup_error(tiny_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "broken"
    shutil.copytree(tiny_dir, copy)
    weights = load_file(copy / _TRANSFORMER_WEIGHTS)
    del weights["proj_out.weight"]
    save_file(weights, copy / _TRANSFORMER_WEIGHTS, metadata={"format": "pt"})

    with pytest.raises(ModelUnavailableError) as caught:
        load_components(copy, torch.float32, model="broken")
    assert str(caught.value) == (
        "FASTWAN_MODEL='broken': the checkpoint's transformer lacks 1 weights the model needs "
        "(proj_out.weight)"
    )


def test_a_missing_component_is_a_startup_error_naming_it(tiny_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "no-vae"
    shutil.copytree(tiny_dir, copy)
    shutil.rmtree(copy / "vae")

    with pytest.raises(ModelUnavailableError, match=r"cannot load vae from .*no-vae"):
        load_components(copy, torch.float32, model="no-vae")


def test_the_full_sizes_layout_loads_through_the_real_path(tmp_path: Path) -> None:
    """``FULL_SIZE`` as ``bench/full_size_model.py`` writes it on a GPU (bf16, 5 GB shards with an
    index, the tokenizer's vocabulary as large as the encoder's, gates), at the tiny dimensions."""
    small = attrs.evolve(
        FULL_SIZE,
        transformer=TINY_TRANSFORMER,
        text_encoder=TINY_TEXT_ENCODER,
        vae=TINY_VAE,
        max_shard_size="40KB",
    )
    folder = ensure_model(tmp_path / "full", small, seed=0, sparse=True, owner="--out")

    components = load_components(folder, torch.bfloat16, model="small full")

    index = json.loads((folder / "transformer/diffusion_pytorch_model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # sharded, the gates found through the index
    assert has_gates(components.transformer)
    assert components.transformer.blocks[0].to_gate_compress.weight.dtype == torch.bfloat16
    assert components.text_encoder.dtype == torch.bfloat16
    assert components.vae.dtype == torch.float32
    assert len(components.tokenizer) == TINY_TEXT_ENCODER["vocab_size"]  # every row reachable
    assert components.tokenizer.convert_tokens_to_ids("<extra_id_0>") == 98
    assert is_complete(folder, small, sparse=True)
    assert not is_complete(folder, small, sparse=False)
    assert not is_complete(folder, TINY_SIZE, sparse=True)  # the tiny model is another build
