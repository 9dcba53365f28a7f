"""The tiny Wan 2.2 decoder: the published layout, the Wan VAE's frame count, streaming, loading."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fastwan_adapters.generator import ModelUnavailableError
from fastwan_adapters.generator.taehv import TinyWanDecoder, build_random_tiny_decoder
from fastwan_adapters.generator.taehv_files import load_tiny_decoder

_PUBLISHED = json.loads((Path(__file__).parent / "fixtures" / "taew2_2_state_dict.json").read_text())
_HUB_FILE = "madebyollin/taehv/taew2_2.pth"


@pytest.fixture(scope="module")
def decoder() -> TinyWanDecoder:
    return build_random_tiny_decoder()


def latents(frames: int, height: int = 4, width: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 48, frames, height, width, generator=torch.Generator().manual_seed(seed))


def shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in state.items()}


def published_file(path: Path, *, seed: int = 7) -> dict[str, torch.Tensor]:
    """A file shaped as the published taew2_2.pth (encoder and decoder), with random values."""
    generator = torch.Generator().manual_seed(seed)
    layout = {**_PUBLISHED["encoder"], **_PUBLISHED["decoder"]}
    state = {key: torch.randn(shape, generator=generator) for key, shape in layout.items()}
    torch.save(state, path)
    return state


def test_the_state_dict_is_the_published_decoder_layout(decoder: TinyWanDecoder) -> None:
    assert shapes(decoder.state_dict()) == _PUBLISHED["decoder"]
    assert 9e6 < sum(p.numel() for p in decoder.parameters()) < 11e6  # "about 10M parameters"


def test_a_decode_gives_the_wan_vae_frame_count_and_size(decoder: TinyWanDecoder) -> None:
    chunks = list(decoder.decode_stream(latents(3)))

    assert [chunk.shape for chunk in chunks] == [(1, 64, 96, 3), (4, 64, 96, 3), (4, 64, 96, 3)]
    assert all(chunk.dtype == np.uint8 for chunk in chunks)
    video = np.concatenate(chunks)
    assert video.shape == (9, 64, 96, 3)  # 4 * (3 - 1) + 1 frames at 16x the latent size
    assert video.std() > 1  # grey noise, not a constant picture


def test_chunks_give_the_frames_of_an_all_at_once_decode(decoder: TinyWanDecoder) -> None:
    x = latents(4)
    whole = list(decoder.decode_stream(x, chunk_frames=4))
    assert len(whole) == 1

    for chunk_frames in (1, 3):
        chunked = np.concatenate(list(decoder.decode_stream(x, chunk_frames=chunk_frames)))
        assert chunked.shape == whole[0].shape == (13, 64, 96, 3)
        # Same arithmetic; convolutions over other batch sizes may sum in another order, which
        # can move a value sitting on a rounding boundary by one level.
        difference = np.abs(chunked.astype(np.int16) - whole[0])
        assert difference.max() <= 1
        assert (difference > 0).mean() < 1e-3


def test_the_decode_is_causal(decoder: TinyWanDecoder) -> None:
    x = latents(3)
    full = np.concatenate(list(decoder.decode_stream(x)))
    prefix = np.concatenate(list(decoder.decode_stream(x[:, :, :2])))

    assert np.array_equal(prefix, full[:5])  # later latents never change earlier frames
    assert not np.array_equal(full[5:], np.concatenate(list(decoder.decode_stream(latents(3, seed=2))))[5:])


def test_values_in_0_1_map_to_uint8_as_the_full_decoder_s_minus_1_1() -> None:
    flat = build_random_tiny_decoder()
    last = flat.decoder[-1]
    with torch.no_grad():
        last.weight.zero_()
        for value, expected in ((0.5, 128), (0.25, 64), (2.0, 255), (-1.0, 0)):
            last.bias.fill_(value)
            frames = np.concatenate(list(flat.decode_stream(latents(1))))
            assert frames.shape == (1, 64, 96, 3)
            assert np.all(frames == expected), value


def test_it_runs_in_the_module_s_dtype(decoder: TinyWanDecoder) -> None:
    half = build_random_tiny_decoder().to(torch.bfloat16)

    frames = np.concatenate(list(half.decode_stream(latents(2))))  # fp32 latents are cast

    assert frames.shape == (5, 64, 96, 3)
    reference = np.concatenate(list(decoder.decode_stream(latents(2))))
    assert np.abs(frames.astype(np.int16) - reference).mean() < 4  # bf16 rounding, same picture


def test_other_shapes_are_refused(decoder: TinyWanDecoder) -> None:
    with pytest.raises(ValueError, match=r"\(1, 48, frames, height, width\)"):
        next(decoder.decode_stream(torch.zeros(1, 16, 2, 4, 4)))


def test_the_random_build_is_deterministic_and_leaves_the_caller_s_random_state() -> None:
    torch.manual_seed(1234)
    before = torch.rand(3)
    torch.manual_seed(1234)

    first, again, other = (build_random_tiny_decoder(seed) for seed in (0, 0, 1))

    assert torch.equal(torch.rand(3), before)
    pairs = zip(first.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(first.decoder[1].weight, other.decoder[1].weight)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_file_saved_from_the_random_instance_loads(
    decoder: TinyWanDecoder, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"tiny{suffix}"
    state = {key: value.contiguous() for key, value in decoder.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)

    loaded = load_tiny_decoder(str(path), cache_dir=None, offline=True)

    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in state.items())
    x = latents(2)
    assert np.array_equal(
        np.concatenate(list(loaded.decode_stream(x))), np.concatenate(list(decoder.decode_stream(x)))
    )


def test_a_file_of_the_published_layout_loads_its_decoder_and_drops_the_encoder(tmp_path: Path) -> None:
    state = published_file(tmp_path / "taew2_2.pth")

    loaded = load_tiny_decoder(str(tmp_path / "taew2_2.pth"), cache_dir=None, offline=True)

    assert loaded.state_dict().keys() == _PUBLISHED["decoder"].keys()
    assert all(torch.equal(value, state[key]) for key, value in loaded.state_dict().items())


def test_a_tgrow_trained_wider_keeps_its_last_rows_as_the_reference_loader(tmp_path: Path) -> None:
    state = published_file(tmp_path / "taew2_2.pth")
    wider = torch.randn(512, 256, 1, 1)  # the first TGrow trained for 2x upsampling
    torch.save({**state, "decoder.7.conv.weight": wider}, tmp_path / "taew2_2.pth")

    loaded = load_tiny_decoder(str(tmp_path / "taew2_2.pth"), cache_dir=None, offline=True)

    assert torch.equal(loaded.decoder[7].conv.weight, wider[256:])


def renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state["decoder.99.weight"] = state.pop("decoder.22.weight")
    return state


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (renamed, "missing: decoder.22.weight; unexpected: decoder.99.weight"),
        (lambda s: {**s, "decoder.1.weight": torch.zeros(256, 16, 3, 3)}, r"decoder.1.weight \(256, 16"),
        (lambda s: {**s, "vae.scale": torch.ones(1)}, "unexpected: vae.scale"),
    ],
    ids=["renamed key", "taew2_1 shape", "foreign key"],
)
def test_a_file_that_does_not_match_is_refused_naming_the_variable(
    tmp_path: Path, change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]], named: str
) -> None:
    path = tmp_path / "taew2_2.pth"
    torch.save(change(published_file(path)), path)

    with pytest.raises(ModelUnavailableError, match=f"FASTWAN_TINY_DECODER.*{named}"):
        load_tiny_decoder(str(path), cache_dir=None, offline=True)


def test_an_unreadable_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "taew2_2.pth"
    path.write_bytes(b"not a checkpoint")

    with pytest.raises(ModelUnavailableError, match=r"FASTWAN_TINY_DECODER.*could not be read"):
        load_tiny_decoder(str(path), cache_dir=None, offline=True)


def test_an_uncached_hub_file_offline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="FASTWAN_TINY_DECODER") as raised:
        load_tiny_decoder(_HUB_FILE, cache_dir=tmp_path / "hub", offline=True)

    assert str(tmp_path / "hub") in str(raised.value)
    assert "HF_HUB_OFFLINE=1" in str(raised.value)


def test_a_cached_hub_file_loads_offline(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    repo = cache / "models--madebyollin--taehv"
    commit = "0" * 40
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    state = published_file(repo / "snapshots" / commit / "taew2_2.pth")

    loaded = load_tiny_decoder(_HUB_FILE, cache_dir=cache, offline=True)

    assert torch.equal(loaded.decoder[1].weight, state["decoder.1.weight"])


@pytest.mark.parametrize("source", ["taew2_2.pth", "madebyollin/taew2_2.pth", "a/b/../../etc/passwd"])
def test_neither_a_file_nor_a_hub_file_is_refused(source: str) -> None:
    with pytest.raises(ModelUnavailableError, match="FASTWAN_TINY_DECODER must be an existing file"):
        load_tiny_decoder(source, cache_dir=None, offline=True)
