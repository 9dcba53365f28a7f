"""The tiny decoder is fed the latent space its file was trained on: taew2_2 normalised, lighttaew2_2 not.

The fixture holds the first frame a fixed decoder makes for fixed latents both ways: as they
are (madebyollin's taew2_2) and as LightX2V feeds its lighttaew2_2 (``need_scaled``:
``latents / (1 / std) + mean``, the Wan 2.2 VAE's statistics). See its ``about``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import save_file

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator import GeneratorSettings
from fastwan_adapters.generator.architecture import TINY_VAE, WAN22_LATENTS_MEAN, WAN22_LATENTS_STD
from fastwan_adapters.generator.taehv import build_random_tiny_decoder
from fastwan_adapters.generator.tiny_latents import LatentSpace, expected_latents
from fastwan_adapters.generator.video_decoder import VideoDecoder

_FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "tiny_decoder_first_frames.json").read_text())
_FIRST_CONV_GAIN = 30.0  # the fixture's decoder: its frames follow the latents, not only its bias
_OTHER: dict[LatentSpace, LatentSpace] = {"normalised": "denormalised", "denormalised": "normalised"}


@pytest.fixture(scope="module")
def vae() -> AutoencoderKLWan:
    """The tiny model's VAE: only its config's ``latents_mean`` / ``latents_std`` (Wan 2.2's) are used."""
    return AutoencoderKLWan(**TINY_VAE).eval()


def decoder_file(folder: Path, name: str) -> Path:
    """The fixture's decoder, saved under ``name`` (the format by its suffix)."""
    decoder = build_random_tiny_decoder(seed=0)
    with torch.no_grad():
        decoder.decoder[1].weight.mul_(_FIRST_CONV_GAIN)
    state = {key: value.contiguous() for key, value in decoder.state_dict().items()}
    path = folder / name
    save_file(state, path) if path.suffix == ".safetensors" else torch.save(state, path)
    return path


def first_frame(vae: AutoencoderKLWan, path: Path, **env: str) -> tuple[np.ndarray, LatentSpace | None]:
    """The first frame the worker's decode stage makes of the fixture's latents, and what it fed."""
    settings = GeneratorSettings.from_env(
        {"FASTWAN_MODEL": "tiny", "FASTWAN_VAE_DECODER": "tiny", "FASTWAN_TINY_DECODER": str(path), **env}
    )
    decoder = VideoDecoder(vae, settings, torch.device("cpu"))
    latents = torch.tensor(_FIXTURE["latents"]).view(1, 48, 1, 1, 1)
    return np.concatenate(list(decoder.chunks(latents, lambda: None)))[0], decoder.tiny_latents


def levels_from(frame: np.ndarray, space: LatentSpace) -> np.ndarray:
    return np.abs(frame.astype(np.int16) - np.array(_FIXTURE["first_frame"][space]))


@pytest.mark.parametrize(
    ("name", "space"),
    [
        ("taew2_2.pth", "normalised"),
        ("taew2_2.safetensors", "normalised"),
        ("lighttaew2_2.safetensors", "denormalised"),
        ("lighttaew2_2.pth", "denormalised"),
    ],
)
def test_each_published_file_is_fed_its_own_latents_and_matches_the_fixture(
    vae: AutoencoderKLWan, tmp_path: Path, one_torch_thread: None, name: str, space: LatentSpace
) -> None:
    frame, fed = first_frame(vae, decoder_file(tmp_path, name))

    assert fed == space
    assert frame.shape == (16, 16, 3)
    assert levels_from(frame, space).max() <= 1  # fp32 on a CPU: at most a rounding level
    assert levels_from(frame, _OTHER[space]).mean() > 3  # the other path's frame is another picture


def test_the_two_paths_give_different_frames_from_the_same_weights(
    vae: AutoencoderKLWan, tmp_path: Path, one_torch_thread: None
) -> None:
    taehv, _ = first_frame(vae, decoder_file(tmp_path, "taew2_2.safetensors"))
    lightx2v, _ = first_frame(vae, decoder_file(tmp_path, "lighttaew2_2.safetensors"))

    difference = np.abs(taehv.astype(np.int16) - lightx2v)
    assert difference.mean() > 3 and (difference > 1).mean() > 0.5
    # The colours move, not only the noise: the frame's mean red differs by several levels.
    assert abs(float(taehv[..., 0].mean()) - float(lightx2v[..., 0].mean())) > 2


def test_the_fixture_s_statistics_are_those_the_decode_stage_applies(vae: AutoencoderKLWan) -> None:
    assert _FIXTURE["latents_mean"] == list(WAN22_LATENTS_MEAN) == list(vae.config.latents_mean)
    assert _FIXTURE["latents_std"] == list(WAN22_LATENTS_STD) == list(vae.config.latents_std)


@pytest.mark.parametrize(
    ("name", "override", "space"),
    [
        ("lighttaew2_2.safetensors", "normalised", "normalised"),
        ("decoder.pth", "denormalised", "denormalised"),
        ("taew2_2.pth", "DENORMALISED", "denormalised"),
    ],
)
def test_the_override_wins_over_the_name(
    vae: AutoencoderKLWan,
    tmp_path: Path,
    one_torch_thread: None,
    name: str,
    override: str,
    space: LatentSpace,
) -> None:
    frame, fed = first_frame(vae, decoder_file(tmp_path, name), FASTWAN_TINY_DECODER_LATENTS=override)

    assert fed == space
    assert levels_from(frame, space).max() <= 1


def test_an_unknown_name_is_fed_normalised_latents_with_a_warning(
    vae: AutoencoderKLWan, tmp_path: Path, one_torch_thread: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="fastwan_adapters.generator.tiny_latents"):
        frame, fed = first_frame(vae, decoder_file(tmp_path, "my-decoder.pth"))

    assert fed == "normalised" and levels_from(frame, "normalised").max() <= 1
    (warning,) = (record for record in caplog.records if record.levelno == logging.WARNING)
    assert "my-decoder.pth" in warning.getMessage()
    assert "FASTWAN_TINY_DECODER_LATENTS=denormalised" in warning.getMessage()


@pytest.mark.parametrize(
    ("source", "space"),
    [
        ("lightx2v/Autoencoders/lighttaew2_2.safetensors", "denormalised"),
        ("madebyollin/taehv/taew2_2.pth", "normalised"),
        ("madebyollin/taehv/safetensors/taew2_2.safetensors", "normalised"),
        ("madebyollin/taehv/taew2_2_super.pth", "normalised"),
        ("/models/LightTAEW2_2.SAFETENSORS", "denormalised"),
        ("/models/lighttae/taew2_2.pth", "normalised"),  # only the file's own name counts
        (None, "normalised"),  # random weights (FASTWAN_MODEL=tiny)
    ],
)
def test_the_file_name_decides_under_auto(source: str | None, space: LatentSpace) -> None:
    assert expected_latents(source, "auto") == space


def test_the_override_is_checked_at_start_up_naming_the_variable() -> None:
    assert GeneratorSettings.from_env({}).tiny_decoder_latents == "auto"
    with pytest.raises(ConfigError, match="FASTWAN_TINY_DECODER_LATENTS must be one of auto, denormalised"):
        GeneratorSettings.from_env({"FASTWAN_TINY_DECODER_LATENTS": "scaled"})
