"""The streaming decode on the tiny model: chunk by chunk it gives the very frames and MP4 bytes of
diffusers' ``vae.decode`` (then one chunk encoded), T2V and I2V, tiled or not; a stop between
chunks ends the decode at once; the prompt cache hits give the same video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fastwan_adapters.encoder import PyAVEncoder
from fastwan_adapters.generator import DiffusersGenerator
from fastwan_adapters.generator.decoding import decode_chunks, is_tiled
from fastwan_adapters.generator.pictures import to_uint8_frames
from fastwan_adapters.testing import FrameCollector
from fastwan_core.errors import JobCancelled
from fastwan_core.job import Job
from fastwan_core.plan import GenerationPlan, plan_generation
from fastwan_core.ports import Stage
from tests.adapters.support import frames_of, tiny_settings
from tests.adapters.test_encoder import encode

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def plan(*, frames: int = 13, prompt: str = "a red fox runs through snow", seed: int = 7) -> GenerationPlan:
    job = Job(musetalk_job_id="job-1", prompt=prompt, width=320, height=256, num_frames=frames, seed=seed)
    return plan_generation(job)


def picture() -> Image.Image:
    image = Image.new("RGB", (320, 256), (200, 40, 10))
    image.paste((10, 180, 60), (80, 64, 160, 128))
    return image


class Events:
    """Cancels (raises) at the ``stop_at``-th decode check."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at, self.decode_checks, self.decoding = stop_at, 0, False

    def stage(self, stage: Stage) -> None:
        self.decoding = stage is Stage.DECODE

    def step(self, index: int, total: int) -> None:
        return None

    def check_cancelled(self) -> None:
        if self.decoding:
            self.decode_checks += 1
            if self.stop_at is not None and self.decode_checks >= self.stop_at:
                raise JobCancelled


class Chunks:
    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def add(self, frames: Any) -> None:
        self.chunks.append(frames.copy())


class ScaledLatents:
    """Observes the scaled latents the VAE's decoder is given (the first call's input)."""

    def __init__(self, generator: DiffusersGenerator) -> None:
        self.seen: list[torch.Tensor] = []
        self.handle = generator.components.vae.post_quant_conv.register_forward_pre_hook(self._hook)

    def _hook(self, _module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.seen.append(args[0].detach().clone())

    def __enter__(self) -> ScaledLatents:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.handle.remove()


@pytest.mark.parametrize("kind", ["t2v", "i2v"])
def test_streamed_frames_and_mp4_equal_the_batch_decode_and_encode(
    generator: DiffusersGenerator, kind: str
) -> None:
    image = picture() if kind == "i2v" else None
    the_plan = plan()
    sink = Chunks()
    with ScaledLatents(generator) as latents:
        generator.generate(the_plan, image, Events(), sink)
    with torch.no_grad():
        batch = to_uint8_frames(generator.components.vae.decode(latents.seen[0], return_dict=False)[0])

    streamed = np.concatenate(sink.chunks)
    assert [len(chunk) for chunk in sink.chunks] == [1, 4, 4, 4]  # one chunk per latent frame
    assert streamed.shape == (13, 256, 320, 3)
    assert np.array_equal(streamed, batch)
    # Without mbtree: with it libx264 does not give the same bytes twice even for one batch encode.
    encoder = PyAVEncoder(x264_params="mbtree=0")
    session = encoder.open(the_plan.output_size, the_plan.fps)
    for chunk in sink.chunks:
        session.add(chunk)
    assert session.finish().data == encode(encoder, batch, the_plan.output_size, the_plan.fps).data


def test_the_generator_says_which_decoder_made_the_frames_and_what_the_cache_said(
    generator: DiffusersGenerator,
) -> None:
    streamed = generator.generate(plan(), picture(), Events(), Chunks())

    assert (streamed.vae_decoder, streamed.prompt_cache) == ("full", "hit")


def test_the_tiled_decode_streams_the_frames_of_diffusers_tiled_decode(generator: DiffusersGenerator) -> None:
    vae = generator.components.vae
    with ScaledLatents(generator) as latents:
        generator.generate(plan(frames=25), None, Events(), FrameCollector())
    z = latents.seen[0]
    vae.enable_tiling(
        tile_sample_min_height=128,
        tile_sample_min_width=128,
        tile_sample_stride_height=96,
        tile_sample_stride_width=96,
    )
    try:
        assert is_tiled(vae, z)
        with torch.no_grad():
            batch = to_uint8_frames(vae.decode(z, return_dict=False)[0])
        chunks = list(decode_chunks(vae, z, bf16=False, check=lambda: None))
    finally:
        vae.disable_tiling()

    assert [len(chunk) for chunk in chunks] == [17, 8]  # five latent frames, then the rest
    assert np.array_equal(np.concatenate(chunks), batch)


def test_a_stop_between_chunks_ends_the_decode_there_and_the_next_job_runs(
    generator: DiffusersGenerator,
) -> None:
    calls: list[int] = []
    handle = generator.components.vae.decoder.register_forward_pre_hook(lambda *_: calls.append(1))
    sink = Chunks()
    try:
        with pytest.raises(JobCancelled):
            generator.generate(plan(frames=17), None, Events(stop_at=2), sink)
    finally:
        handle.remove()

    assert len(calls) == 1 and len(sink.chunks) == 1  # stopped before the second decoder call
    assert all(entry is None for entry in generator.components.vae._feat_map)  # the cache was cleared
    assert frames_of(generator, plan(frames=5), None, Events()).shape == (5, 256, 320, 3)


def test_a_repeated_prompt_hits_the_cache_and_gives_the_same_video(generator: DiffusersGenerator) -> None:
    cache = generator.prompt_cache
    made = {name: FrameCollector() for name in ("first", "again", "other", "evicted")}
    first = generator.generate(plan(prompt="a lighthouse at dusk"), None, Events(), made["first"])
    again = generator.generate(plan(prompt="a lighthouse at dusk"), None, Events(), made["again"])
    other = generator.generate(plan(prompt="a harbour at dawn"), None, Events(), made["other"])

    assert (first.prompt_cache, again.prompt_cache, other.prompt_cache) == ("miss", "hit", "miss")
    assert np.array_equal(made["first"].frames, made["again"].frames)
    assert not np.array_equal(made["first"].frames, made["other"].frames)
    # A bound of one embedding: a new prompt evicts the older, which then misses again.
    saved = cache.max_bytes
    cache.max_bytes = cache.nbytes // len(cache)
    try:
        gull = generator.generate(plan(prompt="a gull in a gale"), None, Events(), FrameCollector())
        assert gull.prompt_cache == "miss"
        assert len(cache) == 1  # the two older embeddings were evicted to make room
        evicted = generator.generate(plan(prompt="a lighthouse at dusk"), None, Events(), made["evicted"])
        assert evicted.prompt_cache == "miss" and np.array_equal(made["evicted"].frames, made["first"].frames)
    finally:
        cache.max_bytes = saved


def test_with_the_cache_off_nothing_is_cached_or_reported(tiny_dir: Path) -> None:
    loaded = DiffusersGenerator.load(tiny_settings(tiny_dir, PROMPT_CACHE_MB="0"))
    try:
        sink = FrameCollector()
        video = loaded.generate(plan(frames=5), None, Events(), sink)
        assert video.prompt_cache is None and len(loaded.prompt_cache) == 0
        assert sink.frames.shape == (5, 256, 320, 3)
    finally:
        loaded.close()


def test_channels_last_the_default_changes_no_frame_beyond_a_level(
    tiny_dir: Path, generator: DiffusersGenerator
) -> None:
    loaded = DiffusersGenerator.load(tiny_settings(tiny_dir, FASTWAN_VAE_CHANNELS_LAST="0"))
    try:
        fast = frames_of(loaded, plan(frames=9), picture(), Events())
    finally:
        loaded.close()
    reference = frames_of(generator, plan(frames=9), picture(), Events())

    assert fast is not None and reference is not None
    # fp32 on the CPU: another memory layout may sum in another order, never more than a level.
    assert int(np.abs(fast.astype(np.int16) - reference.astype(np.int16)).max()) <= 1


# -- the tiny decoder ---------------------------------------------------------------------------


def test_the_tiny_decoder_streams_the_plans_frames_and_says_so(tiny_dir: Path) -> None:
    loaded = DiffusersGenerator.load(tiny_settings(tiny_dir, FASTWAN_VAE_DECODER="tiny"))
    try:
        sink = Chunks()
        calls: list[int] = []
        handle = loaded.components.vae.decoder.register_forward_pre_hook(lambda *_: calls.append(1))
        try:
            streamed = loaded.generate(plan(frames=13), picture(), Events(), sink)
        finally:
            handle.remove()
        whole = frames_of(loaded, plan(frames=13), picture(), Events())
        with pytest.raises(JobCancelled):
            loaded.generate(plan(frames=13), None, Events(stop_at=2), stopped := Chunks())
    finally:
        loaded.close()

    assert calls == []  # the full decoder never ran
    assert streamed.vae_decoder == "tiny"
    assert np.concatenate(sink.chunks).shape == (13, 256, 320, 3)
    assert np.array_equal(np.concatenate(sink.chunks), whole)
    assert len(stopped.chunks) == 1


def test_a_tiny_decoder_file_is_loaded_from_its_path(tiny_dir: Path, tmp_path: Path) -> None:
    from fastwan_adapters.generator.taehv import build_random_tiny_decoder

    path = tmp_path / "taew2_2.pth"
    torch.save(build_random_tiny_decoder(seed=3).state_dict(), path)
    loaded = DiffusersGenerator.load(
        tiny_settings(tiny_dir, FASTWAN_VAE_DECODER="tiny", FASTWAN_TINY_DECODER=str(path))
    )
    try:
        frames = frames_of(loaded, plan(frames=5), None, Events())
    finally:
        loaded.close()
    random_default = DiffusersGenerator.load(tiny_settings(tiny_dir, FASTWAN_VAE_DECODER="tiny"))
    try:
        other = frames_of(random_default, plan(frames=5), None, Events())
    finally:
        random_default.close()

    assert frames is not None and other is not None and frames.shape == (5, 256, 320, 3)
    assert not np.array_equal(frames, other)  # seed 3's weights, not the default's
