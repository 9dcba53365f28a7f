"""Reading a published tiny decoder (``FASTWAN_TINY_DECODER``): a local file or a Hub file.

A Hub file is named ``organisation/repository/path/in/repo`` (``madebyollin/taehv/taew2_2.pth``)
and downloaded with ``hf_hub_download`` into the same cache, under the same offline and retry
rules, as the model (``generator.hub``, ``generator.hub_retry``). ``.pth`` files are read with
``torch.load(weights_only=True)``, which unpickles tensors and plain containers only, never
code; ``.safetensors`` with safetensors.

The published files hold the whole autoencoder (``encoder.*`` and ``decoder.*``). Only the
decoder is used: the ``encoder.*`` tensors are dropped unread into any module, and the
``decoder.*`` part must match ``TinyWanDecoder`` exactly (no key missing, none unexpected, every
shape equal); any other key is refused. One documented exception, as the reference loader
(madebyollin/taehv's ``TAEHV.patch_tgrow_layers``) does: a ``TGrow`` weight with a whole
multiple of the expected rows (trained for more temporal upsampling) keeps its last rows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import torch

from fastwan_adapters.generator.errors import ModelUnavailableError
from fastwan_adapters.generator.hub_retry import NEVER_STOPPED, DownloadRetry, StopSignal, download_with_retry
from fastwan_adapters.generator.taehv import TGrow, TinyWanDecoder

__all__ = ["load_tiny_decoder"]

log = logging.getLogger(__name__)

_VARIABLE: Final = "FASTWAN_TINY_DECODER"
_HUB_FILE: Final = re.compile(r"([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)/((?:[\w.-]+/)*[\w.-]+)")
_SHOWN: Final = 5  # keys listed per kind of mismatch


def load_tiny_decoder(
    source: str,
    *,
    cache_dir: Path | None,
    offline: bool,
    retry: DownloadRetry | None = None,
    endpoint: str | None = None,
    stop: StopSignal = NEVER_STOPPED,
) -> TinyWanDecoder:
    """The decoder in ``source``: an existing file, else a Hub file spec, downloaded if allowed.

    ``cache_dir`` None means huggingface_hub's default cache; ``offline`` (or ``HF_HUB_OFFLINE``)
    means the Hub file must already be cached; ``retry`` (default: ``DownloadRetry()``) how
    long a failing download is retried; ``endpoint`` the Hub's URL (None: huggingface_hub's);
    ``stop`` set ends the download's waits. The decoder is returned on the CPU in fp32, in eval mode.

    Raises:
        ModelUnavailableError: naming ``FASTWAN_TINY_DECODER``: not a file nor a Hub file spec,
            not cached while offline, not found, unreadable, or not a ``taew2_2`` decoder.
        ModelDownloadFailed: the Hub kept failing for a passing reason for ``retry``'s time.
        StartupStopped: ``stop`` was set during the download.
    """
    path = Path(source).expanduser()
    if not path.is_file():
        if path.exists():
            raise ModelUnavailableError(f"{_VARIABLE} must name a weights file, got the folder {source!r}")
        if (spec := _HUB_FILE.fullmatch(source)) is None or ".." in source.split("/"):
            raise ModelUnavailableError(
                f"{_VARIABLE} must be an existing file or a Hugging Face file "
                f"(organisation/repository/file, e.g. madebyollin/taehv/taew2_2.pth), got {source!r}"
            )
        path = _download(
            spec.group(1),
            spec.group(2),
            cache_dir=cache_dir,
            offline=offline,
            retry=retry or DownloadRetry(),
            endpoint=endpoint,
            stop=stop,
        )
    decoder = TinyWanDecoder()
    decoder.load_state_dict(_decoder_part(_read(path), decoder, where=str(path)), strict=True)
    log.info("tiny decoder: loaded %s", path)
    return decoder.eval()


def _download(
    repo: str,
    filename: str,
    *,
    cache_dir: Path | None,
    offline: bool,
    retry: DownloadRetry,
    endpoint: str | None,
    stop: StopSignal,
) -> Path:
    import huggingface_hub
    from huggingface_hub import constants

    cache = cache_dir or Path(constants.HF_HUB_CACHE)
    offline = offline or constants.HF_HUB_OFFLINE
    found = download_with_retry(
        lambda headers: huggingface_hub.hf_hub_download(
            repo,
            filename,
            cache_dir=cache,
            local_files_only=offline,
            endpoint=endpoint,
            headers=dict(headers),
        ),
        variable=_VARIABLE,
        name=f"{repo}/{filename}",
        cache=cache,
        offline=offline,
        retry=retry,
        stop=stop,
    )
    return Path(str(found))


def _read(path: Path) -> Mapping[str, object]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: object = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt or foreign file: pickle, safetensors and OS errors alike
        raise ModelUnavailableError(
            f"{_VARIABLE}: {path} could not be read as a weights file ({type(error).__name__})"
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(key, str) for key in state):
        raise ModelUnavailableError(f"{_VARIABLE}: {path} holds no state dict of named tensors")
    return state


def _decoder_part(
    state: Mapping[str, object], decoder: TinyWanDecoder, *, where: str
) -> dict[str, torch.Tensor]:
    """The file's ``decoder.*`` tensors, checked against ``decoder``; ``encoder.*`` dropped."""
    expected = decoder.state_dict()
    tgrow_keys = {
        f"decoder.{i}.conv.weight" for i, layer in enumerate(decoder.decoder) if isinstance(layer, TGrow)
    }
    part: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    wrong: list[str] = []
    encoder_tensors = 0
    for key, stored in state.items():
        if key.startswith("encoder."):
            encoder_tensors += 1
            continue
        if key not in expected or not isinstance(stored, torch.Tensor):
            unexpected.append(key)
            continue
        want = expected[key].shape
        tensor = stored[-want[0] :] if key in tgrow_keys and _is_wider_tgrow(stored.shape, want) else stored
        if tensor.shape != want:
            wrong.append(f"{key} {tuple(tensor.shape)} (expected {tuple(want)})")
        part[key] = tensor
    missing = sorted(expected.keys() - part.keys())
    if missing or unexpected or wrong:
        problems = [
            f"{label}: {', '.join(keys[:_SHOWN])}{' ...' if len(keys) > _SHOWN else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", sorted(unexpected)),
                ("wrong shape", wrong),
            )
            if keys
        ]
        raise ModelUnavailableError(
            f"{_VARIABLE}: {where} is not a TAEHV Wan 2.2 (taew2_2) decoder; {'; '.join(problems)}"
        )
    if encoder_tensors:
        log.info("tiny decoder: %d encoder tensors in %s left unused", encoder_tensors, where)
    return part


def _is_wider_tgrow(shape: torch.Size, want: torch.Size) -> bool:
    return shape[1:] == want[1:] and shape[0] > want[0] and shape[0] % want[0] == 0
