"""Random-weight Wan 2.2 TI2V checkpoints in diffusers layout, at two sizes, built without a download.

One builder serves the tiny model (tests and CPU runs: ``FASTWAN_MODEL=tiny``) and the
full-size one (``bench/full_size_model.py``, which writes FastWan 2.2's architecture on a GPU
so that the worker can be run end to end there without the hub). Both have the same modules,
the same VSA compression gates stored as FastWan stores them (``blocks.N.to_gate_compress``
at block level in the transformer's safetensors, where diffusers' loader ignores them and
``vsa.gates`` picks them up), and the same ``save_pretrained`` layout that
``loading.load_components`` reads; a :class:`ModelSize` says what differs: the dimensions
(``architecture``), the dtype the weights are made in, the tokenizer's vocabulary and the
shard size.

Weights are drawn from fixed seeds under ``torch.random.fork_rng``, so a build is repeatable
(on one device) and the caller's random state is left as it was. ``model_folder`` writes a
checkpoint to its folder once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from fastwan_adapters.generator.architecture import (
    TINY_TEXT_ENCODER,
    TINY_TRANSFORMER,
    TINY_VAE,
    UMT5_XXL_ENCODER,
    WAN22_TI2V_5B_TRANSFORMER,
    WAN22_VAE,
)

if TYPE_CHECKING:
    import torch
    from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
    from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
    from transformers import UMT5EncoderModel

__all__ = ["FULL_SIZE", "TINY_SIZE", "ModelSize", "RandomModel", "char_tokenizer", "random_model"]

_MAX_TOKENS: Final = 512


@attrs.frozen
class ModelSize:
    """What a random-weight checkpoint is made of.

    Attributes:
        name: ``tiny`` or ``full``, for messages.
        transformer, text_encoder, vae: constructor arguments (``architecture``).
        dtype: the transformer's and text encoder's weights (``bfloat16`` as the worker runs
            them on a GPU, ``float32`` for the CPU); the VAE is always fp32, as the worker keeps it.
        full_vocabulary: the tokenizer's vocabulary is padded to the text encoder's, so that
            it covers every row of the embedding table as UMT5's own tokenizer does; the tiny
            model keeps its 98 tokens (its files stay as they always were).
        max_shard_size: ``save_pretrained``'s shard size (diffusers' and transformers' own
            default when None); the full size is sharded and indexed like a hub checkpoint.
    """

    name: str
    transformer: Mapping[str, Any]
    text_encoder: Mapping[str, Any]
    vae: Mapping[str, Any]
    dtype: str
    full_vocabulary: bool
    max_shard_size: str | None


TINY_SIZE: Final = ModelSize(
    "tiny",
    TINY_TRANSFORMER,
    TINY_TEXT_ENCODER,
    TINY_VAE,
    "float32",
    full_vocabulary=False,
    max_shard_size=None,
)
#: FastWan 2.2 TI2V-5B at full size: the 5.0 B-parameter transformer (and 0.28 B of gates) and
#: the 5.7 B-parameter UMT5-XXL encoder in bf16, the 0.7 B-parameter Wan 2.2 VAE in fp32: 24.8 GB
#: by parameter count, about what the worker downloads (``hub``); shards of 5 GB, as diffusers'
#: Wan conversion script saves (``scripts/convert_wan_to_diffusers.py``).
FULL_SIZE: Final = ModelSize(
    "full",
    WAN22_TI2V_5B_TRANSFORMER,
    UMT5_XXL_ENCODER,
    WAN22_VAE,
    "bfloat16",
    full_vocabulary=True,
    max_shard_size="5GB",
)


@attrs.define
class RandomModel:
    """The modules of a random-weight checkpoint, in memory (the bench uses them unsaved)."""

    tokenizer: Any
    text_encoder: UMT5EncoderModel
    transformer: WanTransformer3DModel
    vae: AutoencoderKLWan

    def save(self, folder: Path, size: ModelSize) -> None:
        """Write the checkpoint to ``folder`` as FastWan's is laid out (``model_index.json`` naming
        ``WanDMDPipeline``, the class diffusers lacks)."""
        from diffusers.pipelines.wan.pipeline_wan import WanPipeline
        from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # no per-shard bar on stderr beside the logs
        pipeline = WanPipeline(
            tokenizer=self.tokenizer,
            text_encoder=self.text_encoder,
            vae=self.vae,
            # Saved for a complete checkpoint; the generator brings its own distilled scheduler.
            scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
            transformer=self.transformer,
            expand_timesteps=True,
        )
        pipeline.save_pretrained(folder, max_shard_size=size.max_shard_size)
        index_path = folder / "model_index.json"
        index = json.loads(index_path.read_text())
        index["_class_name"] = "WanDMDPipeline"
        index_path.write_text(json.dumps(index, indent=2))


def random_model(
    size: ModelSize, *, seed: int, sparse: bool, device: torch.device | None = None
) -> RandomModel:
    """The modules of ``size`` with random weights, made directly on ``device`` (the CPU by default).

    With ``sparse``, random non-zero VSA compression gates are attached to the transformer's
    blocks as ``vsa.gates`` attaches a checkpoint's. Parameters the transformer keeps in fp32
    (``_keep_in_fp32_modules``) are left in fp32, as ``from_pretrained`` leaves them.
    """
    import torch
    from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
    from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    device = device or torch.device("cpu")
    dtype = getattr(torch, size.dtype)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.device(device):
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(**size.vae)
        with _default_dtype(dtype):
            torch.manual_seed(seed)
            text_encoder = UMT5EncoderModel(UMT5Config(**size.text_encoder))
            torch.manual_seed(seed)
            transformer = WanTransformer3DModel(**size.transformer)
    _keep_in_fp32(transformer)
    if sparse:
        _attach_random_gates(transformer, seed=seed + 1)
    vocabulary = int(size.text_encoder["vocab_size"])
    tokenizer = char_tokenizer(vocabulary, full=size.full_vocabulary)
    return RandomModel(tokenizer, text_encoder.eval(), transformer.eval(), vae.eval())


def char_tokenizer(vocab_size: int, *, full: bool = False) -> Any:
    """A UMT5-style fast tokenizer over single characters, built from a vocabulary in code.

    Pad is id 0 and end-of-sequence id 1, as in UMT5; every printable ASCII character is a
    token, so any prompt tokenizes without an unknown token in the common case. With ``full``
    the vocabulary is padded with ``<extra_id_N>`` pieces to ``vocab_size`` entries, the size
    of the text encoder's embedding table.

    Raises:
        ValueError: the characters alone need more ids than ``vocab_size``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces = [("\u2581", -2.0)] + [(chr(code), -3.0) for code in range(33, 127)]
    vocab = specials + pieces
    if len(vocab) > vocab_size:
        raise ValueError(
            f"a vocabulary of {len(vocab)} exceeds the encoder's embedding table of {vocab_size}"
        )
    if full:
        vocab += [(f"<extra_id_{index}>", -30.0) for index in range(vocab_size - len(vocab))]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}  # tokens, not secrets
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=_MAX_TOKENS, **special)


def _attach_random_gates(transformer: Any, *, seed: int) -> None:
    """Random gates on every block, drawn on the transformer's device.

    The gate's output multiplies the compressed attention branch, so it is drawn large enough
    to matter (weights of unit-variance outputs, biases around 0.5), never zero.
    """
    import torch

    from fastwan_adapters.generator.vsa.gates import attach_gates

    reference = transformer.blocks[0].attn1.to_q.weight
    generator = torch.Generator(reference.device).manual_seed(seed)
    weights: dict[str, torch.Tensor] = {}
    for index, block in enumerate(transformer.blocks):
        inner, dim = block.attn1.to_q.weight.shape
        draw = {"generator": generator, "device": reference.device}
        weights[f"blocks.{index}.to_gate_compress.weight"] = torch.randn(inner, dim, **draw) / dim**0.5
        weights[f"blocks.{index}.to_gate_compress.bias"] = 0.5 + 0.1 * torch.randn(inner, **draw)
    attach_gates(transformer, weights, model="random weights")


def _keep_in_fp32(transformer: Any) -> None:
    import torch

    keep = set(transformer._keep_in_fp32_modules or ())
    for name, tensor in [*transformer.named_parameters(), *transformer.named_buffers()]:
        if keep & set(name.split(".")) and tensor.dtype != torch.float32:
            tensor.data = tensor.data.float()


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
