"""Loading the checkpoint's components one by one, with the classes named explicitly.

FastWan's ``model_index.json`` names ``WanDMDPipeline``, a FastVideo class diffusers does not
have, so ``DiffusionPipeline.from_pretrained`` cannot load it. Each component is loaded with
its own ``from_pretrained`` instead, which also lets each have its dtype (the VAE stays fp32)
and tells which checkpoint weights nothing uses (one clear warning rather than a silent drop).
FastWan's sparse-attention checkpoint carries compression gates (``to_gate_compress``) that
diffusers' transformer does not know: they are read from its safetensors and attached to
the blocks here (``vsa.gates``); which attention then runs is decided at placement.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, cast

import attrs
import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel

from fastwan_adapters.generator.errors import ModelUnavailableError
from fastwan_adapters.generator.hub import COMPONENT_FOLDERS
from fastwan_adapters.generator.vsa.gates import attach_gates, read_gate_weights

__all__ = ["WanComponents", "load_components"]

log = logging.getLogger(__name__)

_USED_INDEX_KEYS: Final = frozenset({*COMPONENT_FOLDERS, "scheduler"})
_SHOWN_PATTERNS: Final = 8


@attrs.define
class WanComponents:
    """The modules both pipelines share: loaded once, held once in memory."""

    tokenizer: Any
    text_encoder: torch.nn.Module
    transformer: WanTransformer3DModel
    vae: AutoencoderKLWan

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"text_encoder": self.text_encoder, "transformer": self.transformer, "vae": self.vae}


def load_components(folder: Path, dtype: torch.dtype, *, model: str) -> WanComponents:
    """Load tokenizer, text encoder and transformer (in ``dtype``) and the VAE (fp32) from ``folder``.

    ``model`` is the configured ``FASTWAN_MODEL``, for messages.

    Raises:
        ModelUnavailableError: a component is missing, unreadable, lacks weights the model needs,
            or the checkpoint is not a Wan 2.2 TI2V one.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers import AutoTokenizer, UMT5EncoderModel
    from transformers.utils import logging as transformers_logging

    # The files are on disk by now (the download logs its own progress): per-shard bars on
    # stderr would only break the worker's structured logs.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    _warn_unused_components(folder, model)
    with _loading(model, folder, "transformer"), _without_diffusers_unused_warning():
        transformer, info = WanTransformer3DModel.from_pretrained(
            folder, subfolder="transformer", torch_dtype=dtype, output_loading_info=True
        )
    with _loading(model, folder, "transformer"):
        gates = read_gate_weights(folder / "transformer")
    attach_gates(transformer, gates, model=model)
    _check_weights(model, "transformer", info, consumed=gates.keys())
    with _loading(model, folder, "text_encoder"):
        # transformers types the result as the model alone, not the (model, info) pair asked for.
        text_encoder, info = cast(
            "tuple[UMT5EncoderModel, dict[str, Any]]",
            UMT5EncoderModel.from_pretrained(
                folder, subfolder="text_encoder", dtype=dtype, output_loading_info=True
            ),
        )
    _check_weights(model, "text_encoder", info)
    with _loading(model, folder, "vae"):
        vae, info = AutoencoderKLWan.from_pretrained(
            folder, subfolder="vae", torch_dtype=torch.float32, output_loading_info=True
        )
    _check_weights(model, "vae", info)
    with _loading(model, folder, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(folder, subfolder="tokenizer")
    components = WanComponents(tokenizer, text_encoder.eval(), transformer.eval(), vae.eval())
    _check_architecture(model, components)
    return components


@contextmanager
def _loading(model: str, folder: Path, component: str) -> Iterator[None]:
    """Turn a component's load failure into one start-up error naming the model and the folder."""
    try:
        yield
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise ModelUnavailableError(
            f"FASTWAN_MODEL={model!r}: cannot load {component} from {folder}: "
            f"{type(error).__name__}: {detail}"
        ) from error


@contextmanager
def _without_diffusers_unused_warning() -> Iterator[None]:
    """Hide diffusers' own "weights ... were not used" warning: it would call the VSA gates,
    which are used, unused; ``_check_weights`` names the weights that really are."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Some weights of the model checkpoint")

    emitter = logging.getLogger("diffusers.models.modeling_utils")
    emitter.addFilter(keep)
    try:
        yield
    finally:
        emitter.removeFilter(keep)


def _check_weights(model: str, component: str, info: Mapping[str, Any], consumed: Iterable[str] = ()) -> None:
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise ModelUnavailableError(
            f"FASTWAN_MODEL={model!r}: the checkpoint's {component} lacks {len(missing)} weights the model "
            f"needs ({_patterns(missing)})"
        )
    used = set(consumed)
    unused = sorted(key for key in info.get("unexpected_keys") or () if key not in used)
    if unused:
        log.warning(
            "FASTWAN_MODEL=%s: the checkpoint's %s has %d weights the pipeline does not use, ignored: %s",
            model,
            component,
            len(unused),
            _patterns(unused),
        )


def _warn_unused_components(folder: Path, model: str) -> None:
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return  # a folder without an index still loads component by component
    for name, value in index.items():
        if name.startswith("_") or name in _USED_INDEX_KEYS or not isinstance(value, list):
            continue
        if value and value[0] is not None:
            log.warning(
                "FASTWAN_MODEL=%s: checkpoint component %r (%s) is not used by the pipeline",
                model,
                name,
                ".".join(str(part) for part in value),
            )


def _check_architecture(model: str, components: WanComponents) -> None:
    # diffusers types ``config`` as a dict: it is a FrozenDict, its keys attributes too.
    transformer_config: Any = components.transformer.config
    channels, z_dim = transformer_config.in_channels, cast(Any, components.vae.config).z_dim
    if channels != z_dim:
        raise ModelUnavailableError(
            f"FASTWAN_MODEL={model!r} is not a Wan 2.2 TI2V checkpoint: its transformer takes {channels} "
            f"latent channels and its VAE makes {z_dim}"
        )
    text_width = getattr(components.text_encoder.config, "d_model", None)
    if transformer_config.text_dim != text_width:
        raise ModelUnavailableError(
            f"FASTWAN_MODEL={model!r}: the transformer expects text features of width "
            f"{transformer_config.text_dim}, the text encoder gives {text_width}"
        )


def _patterns(keys: Iterable[str]) -> str:
    """Weight names with layer numbers folded (``blocks.*.attn1.to_gate_compress.weight``)."""
    folded = sorted({re.sub(r"\.\d+(?=\.|$)", ".*", key) for key in keys})
    shown = ", ".join(folded[:_SHOWN_PATTERNS])
    return shown + (f", and {len(folded) - _SHOWN_PATTERNS} more" if len(folded) > _SHOWN_PATTERNS else "")
