"""The tiny model: Wan 2.2 TI2V's layout with random weights, built locally, never downloaded.

It exists so that the whole generator (the loading path, both pipelines, the distilled
sampling, the stages and the failure handling) runs in tests and on machines without a GPU.
Its output is noise. It is saved with ``save_pretrained`` like any diffusers checkpoint and
loaded by the same code as the real model; its ``model_index.json`` even names the
``WanDMDPipeline`` class diffusers lacks, as FastWan's does.

``tiny-sparse`` is the same model plus random, non-zero VSA compression gates stored exactly
as FastWan stores them: ``blocks.N.to_gate_compress.{weight,bias}`` at block level in the
transformer's safetensors, where diffusers' own loader ignores them and ours picks them up.

The build is deterministic (fixed seeds, under ``torch.random.fork_rng`` so that the
caller's random state is untouched) and happens once per folder: a complete build is
marked by ``_MARKER``; concurrent builders each build aside and the first rename wins.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator.architecture import TINY_TEXT_ENCODER, TINY_TRANSFORMER, TINY_VAE

__all__ = ["TINY_SEED", "add_random_gates", "build_tiny_model", "ensure_tiny_model", "tiny_tokenizer"]

log = logging.getLogger(__name__)

TINY_SEED: Final = 0
_MARKER: Final = "fastwan-tiny.json"
_BUILD_VERSION: Final = 2
_TRANSFORMER_FILE: Final = "transformer/diffusion_pytorch_model.safetensors"
_MAX_TOKENS: Final = 512


def ensure_tiny_model(folder: Path, *, sparse: bool = False) -> Path:
    """The tiny model (with gates if ``sparse``) in ``folder``, built there first if it is not already."""
    if _is_complete(folder, sparse):
        return folder
    _clear_outdated(folder, sparse)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        build_tiny_model(staging, sparse=sparse)
        try:
            staging.rename(folder)
        except OSError:
            if not _is_complete(folder, sparse):  # not another builder's finished copy: a real problem
                raise
            log.info("tiny model: another process built %s first; using it", folder)
        else:
            log.info("tiny model: built in %s", folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def build_tiny_model(folder: Path, *, sparse: bool = False) -> None:
    """Write the tiny random-weight checkpoint to ``folder`` (diffusers layout), with gates if ``sparse``."""
    import torch
    from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
    from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
    from diffusers.pipelines.wan.pipeline_wan import WanPipeline
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from transformers import UMT5Config, UMT5EncoderModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no per-shard bar on stderr beside the logs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        vae = AutoencoderKLWan(**TINY_VAE)
        torch.manual_seed(TINY_SEED)
        text_encoder = UMT5EncoderModel(UMT5Config(**TINY_TEXT_ENCODER))
        torch.manual_seed(TINY_SEED)
        transformer = WanTransformer3DModel(**TINY_TRANSFORMER)
    pipeline = WanPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=text_encoder,
        vae=vae,
        # Saved for a complete checkpoint; the generator brings its own distilled scheduler.
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=transformer,
        expand_timesteps=True,
    )
    pipeline.save_pretrained(folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["_class_name"] = "WanDMDPipeline"
    index_path.write_text(json.dumps(index, indent=2))
    if sparse:
        add_random_gates(folder / _TRANSFORMER_FILE, seed=TINY_SEED)
    marker = {"version": _BUILD_VERSION, "seed": TINY_SEED, "sparse": sparse}
    (folder / _MARKER).write_text(json.dumps(marker))


def add_random_gates(path: Path, *, seed: int) -> None:
    """Add random ``blocks.N.to_gate_compress`` weights to a transformer's safetensors file.

    The gate's output multiplies the compressed attention branch, so it is drawn large enough
    to matter (weights of unit-variance outputs, biases around 0.5), never zero.
    """
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    blocks = sorted({int(name.split(".")[1]) for name in tensors if name.startswith("blocks.")})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        for index in blocks:
            inner, dim = tensors[f"blocks.{index}.attn1.to_q.weight"].shape
            dtype = tensors[f"blocks.{index}.attn1.to_q.weight"].dtype
            weight = torch.randn(inner, dim) / dim**0.5
            tensors[f"blocks.{index}.to_gate_compress.weight"] = weight.to(dtype)
            tensors[f"blocks.{index}.to_gate_compress.bias"] = (0.5 + 0.1 * torch.randn(inner)).to(dtype)
    save_file(tensors, str(path), metadata={"format": "pt"})


def tiny_tokenizer() -> Any:
    """A UMT5-style fast tokenizer over single characters, built from a vocabulary in code.

    Pad is id 0 and end-of-sequence id 1, as in UMT5; every printable ASCII character is a
    token, so any prompt tokenizes without an unknown token in the common case.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces = [("\u2581", -2.0)] + [(chr(code), -3.0) for code in range(33, 127)]
    vocab = specials + pieces
    if len(vocab) > TINY_TEXT_ENCODER["vocab_size"]:
        raise AssertionError(f"tiny vocabulary of {len(vocab)} exceeds the encoder's embedding table")
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}  # tokens, not secrets
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=_MAX_TOKENS, **special)


def _clear_outdated(folder: Path, sparse: bool) -> None:
    """Remove an older build of ours; refuse to touch a folder that is not ours."""
    if not folder.is_dir() or not any(folder.iterdir()) or _is_complete(folder, sparse):
        return  # nothing there, or another process has just finished a current build
    if not (folder / _MARKER).is_file():
        raise ConfigError(
            f"FASTWAN_TINY_DIR: {folder} is not empty and holds no tiny model built by this worker; "
            "remove it or choose another folder"
        )
    log.info("tiny model: replacing the outdated build in %s", folder)
    shutil.rmtree(folder)


def _is_complete(folder: Path, sparse: bool) -> bool:
    marker = folder / _MARKER
    try:
        built = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return bool(built.get("version") == _BUILD_VERSION and built.get("sparse", False) == sparse)
