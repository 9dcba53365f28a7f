"""VSA in the real generator, on ``tiny-sparse``: which attention runs, the gates, and the videos.

The checkpoint is built with its gates stored as FastWan stores them and loaded through the
same path as the real model; nothing of the pipeline is stubbed.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator import DiffusersGenerator, GeneratorSettings, ModelUnavailableError
from fastwan_adapters.generator.loading import load_components
from fastwan_adapters.generator.vsa.processor import VsaAttnProcessor
from fastwan_adapters.testing import FrameCollector
from fastwan_core.job import Job
from fastwan_core.plan import GenerationPlan, plan_generation
from fastwan_core.ports import Stage
from tests.adapters.support import frames_of

_TRANSFORMER = "transformer/diffusion_pytorch_model.safetensors"
_CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def settings(tiny_dir: Path, model: str = "tiny-sparse", **env: str) -> GeneratorSettings:
    return GeneratorSettings.from_env(
        {"FASTWAN_MODEL": model, "FASTWAN_TINY_DIR": str(tiny_dir), "FASTWAN_WARMUP": "0", **env}
    )


class Events:
    def stage(self, stage: Stage) -> None: ...

    def step(self, index: int, total: int) -> None: ...

    def check_cancelled(self) -> None: ...


def plan(seed: int = 3) -> GenerationPlan:
    job = Job(musetalk_job_id="vsa-1", prompt="a fox", width=256, height=256, num_frames=9, seed=seed)
    return plan_generation(job)


def first_frame() -> Image.Image:
    image = Image.new("RGB", (256, 256), (30, 90, 200))
    image.paste((250, 220, 10), (64, 64, 160, 160))
    return image


@pytest.fixture(scope="module")
def sparse(tiny_dir: Path, tiny_sparse_dir: Path) -> Iterator[DiffusersGenerator]:
    loaded = DiffusersGenerator.load(settings(tiny_dir))
    yield loaded
    loaded.close()


def video(generator: DiffusersGenerator, image: Image.Image | None = None, seed: int = 3) -> np.ndarray:
    return frames_of(generator, plan(seed), image, Events())


def from_folder(folder: Path, tiny_dir: Path, **env: str) -> DiffusersGenerator:
    """A generator over a modified copy of the checkpoint, loaded by the same code as the real one."""
    components = load_components(folder, torch.float32, model=folder.name)
    return DiffusersGenerator.from_components(components, settings(tiny_dir, **env), _CPU)


def test_tiny_sparse_stores_nonzero_gates_at_block_level_in_the_transformer(tiny_sparse_dir: Path) -> None:
    with safe_open(str(tiny_sparse_dir / _TRANSFORMER), framework="pt") as handle:
        names = [name for name in handle.keys() if "to_gate_compress" in name]  # noqa: SIM118
        gates = {name: handle.get_tensor(name) for name in names}
    assert sorted(gates) == [
        f"blocks.{i}.to_gate_compress.{part}" for i in range(2) for part in ("bias", "weight")
    ]
    assert gates["blocks.0.to_gate_compress.weight"].shape == (24, 24)
    assert all(tensor.abs().min() > 0 or tensor.abs().mean() > 0.1 for tensor in gates.values())


def test_a_checkpoint_with_gates_runs_vsa_with_them_and_says_so(
    tiny_dir: Path, tiny_sparse_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        loaded = DiffusersGenerator.load(settings(tiny_dir))
    try:
        transformer = loaded.components.transformer
        stored = load_file(tiny_sparse_dir / _TRANSFORMER)
        for index, block in enumerate(transformer.blocks):
            assert isinstance(block.attn1.processor, VsaAttnProcessor)
            assert block.attn1.processor.gate is block.to_gate_compress
            assert torch.equal(
                block.to_gate_compress.weight, stored[f"blocks.{index}.to_gate_compress.weight"]
            )
            assert not isinstance(block.attn2.processor, VsaAttnProcessor)
        generated = loaded.generate(plan(), None, Events(), FrameCollector())
    finally:
        loaded.close()
    assert (generated.attention, generated.vsa_sparsity) == ("vsa", 0.8)
    messages = [record.getMessage() for record in caplog.records]
    assert any("self-attention VSA (sparsity 0.8, reference)" in message for message in messages)
    assert not any("not used" in message or "does not use" in message for message in messages)


def test_a_checkpoint_without_gates_runs_dense(tiny_dir: Path) -> None:
    loaded = DiffusersGenerator.load(settings(tiny_dir, model="tiny"))
    try:
        assert loaded.attention.kind == "dense"
        generated = loaded.generate(plan(), None, Events(), FrameCollector())
        assert (generated.attention, generated.vsa_sparsity) == ("dense", None)
    finally:
        loaded.close()


def test_vsa_on_a_checkpoint_without_gates_is_a_startup_error(tiny_dir: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"FASTWAN_ATTENTION=vsa, but FASTWAN_MODEL='tiny' has no compression gates"
    ):
        DiffusersGenerator.load(settings(tiny_dir, model="tiny", FASTWAN_ATTENTION="vsa"))


def test_dense_on_a_sparse_checkpoint_runs_with_a_warning_and_drops_the_gates(
    tiny_dir: Path, tiny_sparse_dir: Path, sparse: DiffusersGenerator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        loaded = DiffusersGenerator.load(settings(tiny_dir, FASTWAN_ATTENTION="dense"))
    try:
        assert loaded.attention.kind == "dense"
        assert not any(hasattr(block, "to_gate_compress") for block in loaded.components.transformer.blocks)
        dense_frames = video(loaded)
    finally:
        loaded.close()
    assert any("not what the model was trained to make" in record.getMessage() for record in caplog.records)
    assert not np.array_equal(dense_frames, video(sparse))


def test_partial_gates_are_a_startup_error_naming_the_model(tiny_sparse_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "half-sparse"
    shutil.copytree(tiny_sparse_dir, copy)
    weights = load_file(copy / _TRANSFORMER)
    del weights["blocks.1.to_gate_compress.weight"], weights["blocks.1.to_gate_compress.bias"]
    save_file(weights, copy / _TRANSFORMER, metadata={"format": "pt"})
    with pytest.raises(
        ModelUnavailableError, match=r"FASTWAN_MODEL='half-sparse'.*only some of its 2 blocks"
    ):
        load_components(copy, torch.float32, model="half-sparse")


def test_gates_are_read_from_a_sharded_checkpoint(tiny_sparse_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sharded"
    shutil.copytree(tiny_sparse_dir, copy)
    weights = load_file(copy / _TRANSFORMER)
    (copy / _TRANSFORMER).unlink()
    names = sorted(weights)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": names[::2],
              "diffusion_pytorch_model-00002-of-00002.safetensors": names[1::2]}  # fmt: skip
    for file, keys in shards.items():
        save_file({key: weights[key] for key in keys}, copy / "transformer" / file, metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {key: file for file, keys in shards.items() for key in keys}}
    index_file = copy / "transformer" / "diffusion_pytorch_model.safetensors.index.json"
    index_file.write_text(json.dumps(index))

    components = load_components(copy, torch.float32, model="sharded")
    for index_, block in enumerate(components.transformer.blocks):
        assert torch.equal(block.to_gate_compress.bias, weights[f"blocks.{index_}.to_gate_compress.bias"])


def test_the_gates_are_really_used(
    tiny_sparse_dir: Path, tiny_dir: Path, tmp_path: Path, sparse: DiffusersGenerator
) -> None:
    copy = tmp_path / "perturbed"
    shutil.copytree(tiny_sparse_dir, copy)
    weights = load_file(copy / _TRANSFORMER)
    weights["blocks.1.to_gate_compress.bias"] = weights["blocks.1.to_gate_compress.bias"] + 1.0
    save_file(weights, copy / _TRANSFORMER, metadata={"format": "pt"})
    perturbed = from_folder(copy, tiny_dir)
    try:
        assert perturbed.attention.kind == "vsa"
        assert not np.array_equal(video(perturbed), video(sparse))
    finally:
        perturbed.close()


def test_the_sparsity_setting_is_what_runs(
    tiny_dir: Path, tiny_sparse_dir: Path, sparse: DiffusersGenerator
) -> None:
    loaded = DiffusersGenerator.load(settings(tiny_dir, FASTWAN_VSA_SPARSITY="0"))
    try:
        assert loaded.attention.sparsity == 0.0
        assert not np.array_equal(video(loaded), video(sparse))
    finally:
        loaded.close()


@pytest.mark.parametrize("with_image", [False, True], ids=["t2v", "i2v"])
def test_tiny_sparse_end_to_end_is_seeded_and_deterministic(
    sparse: DiffusersGenerator, with_image: bool
) -> None:
    image = first_frame() if with_image else None
    first = video(sparse, image, seed=11)
    torch.manual_seed(1234)  # the global RNG plays no part
    assert first.shape == (9, 256, 256, 3)
    assert np.array_equal(first, video(sparse, image, seed=11))
    assert not np.array_equal(first, video(sparse, image, seed=12))


def test_streamed_weights_stream_the_gates_too_and_give_the_same_video(
    tiny_dir: Path, tiny_sparse_dir: Path, sparse: DiffusersGenerator
) -> None:
    streamed = DiffusersGenerator.load(settings(tiny_dir, GPU_MEMORY_PROFILE="cpu-offload"))
    try:
        gate = streamed.components.transformer.blocks[0].to_gate_compress
        assert getattr(gate, "_diffusers_hook", None) is not None  # group offloading hooked it
        assert np.array_equal(video(streamed, first_frame()), video(sparse, first_frame()))
    finally:
        streamed.close()
