"""The diffusers generator, run for real on the tiny random-weight Wan 2.2 TI2V model (CPU).

Each test drives ``DiffusersGenerator.generate`` as the use case does and checks what comes
out (frames, failures, the events reported) or what the real modules were called with
(observed through forward hooks, never replaced).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator import (
    DiffusersGenerator,
    GeneratorSettings,
    ModelUnavailableError,
    NoGpuError,
)
from fastwan_adapters.generator.hub import resolve_model_folder
from fastwan_adapters.testing import FrameCollector
from fastwan_core.errors import ErrorCode, JobCancelled, JobFailure
from fastwan_core.job import Job
from fastwan_core.plan import FASTWAN_TIMESTEPS, GenerationPlan, plan_generation
from fastwan_core.ports import Stage
from tests.adapters.support import frames_of, tiny_settings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def plan(*, width: int = 256, height: int = 256, frames: int = 5, seed: int = 7) -> GenerationPlan:
    job = Job(
        musetalk_job_id="job-1",
        prompt="a red fox runs through snow",
        width=width,
        height=height,
        num_frames=frames,
        seed=seed,
    )
    return plan_generation(job)


def picture(color: tuple[int, int, int] = (200, 40, 10), size: tuple[int, int] = (256, 256)) -> Image.Image:
    image = Image.new("RGB", size, color)
    image.paste((10, 180, 60), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return image


class RecordingEvents:
    """Records the generator's calls; raises ``JobCancelled`` once ``cancel_after`` steps are done."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.cancel_after = cancel_after
        self.calls: list[tuple[Any, ...]] = []
        self.steps_done = 0

    def stage(self, stage: Stage) -> None:
        self.calls.append(("stage", stage))

    def step(self, index: int, total: int) -> None:
        self.steps_done = index
        self.calls.append(("step", index, total))

    def check_cancelled(self) -> None:
        self.calls.append(("check",))
        if self.cancel_after is not None and self.steps_done >= self.cancel_after:
            raise JobCancelled


@contextmanager
def transformer_calls(
    generator: DiffusersGenerator, fail_with: BaseException | None = None
) -> Iterator[list[Any]]:
    """Observe the real transformer's calls (their timestep tensors); optionally fail the next call once."""
    seen: list[Any] = []
    pending = [fail_with] if fail_with is not None else []

    def hook(_module: torch.nn.Module, _args: Any, kwargs: dict[str, Any]) -> None:
        if pending:
            raise pending.pop()
        seen.append(kwargs["timestep"].detach().clone())

    handle = generator.components.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


# -- frames -------------------------------------------------------------------------------------


def test_text_to_video_gives_the_generated_size_and_frame_count(generator: DiffusersGenerator) -> None:
    the_plan = plan(width=256, height=320, frames=9)

    sink = FrameCollector()
    video = generator.generate(the_plan, None, RecordingEvents(), sink)

    assert isinstance(sink.frames, np.ndarray)
    assert sink.frames.dtype == np.uint8
    assert sink.frames.shape == (9, 320, 256, 3)
    assert video.peak_vram_gb == 0.0  # CPU
    assert sink.frames.std() > 0  # noise, not a blank clip


def test_image_to_video_gives_the_generated_size_and_frame_count(generator: DiffusersGenerator) -> None:
    the_plan = plan(width=320, height=256, frames=5)

    frames = frames_of(generator, the_plan, picture(size=(500, 400)), RecordingEvents())

    assert frames.shape == (5, 256, 320, 3)
    assert frames.dtype == np.uint8


def test_the_same_job_and_seed_give_the_same_video_whatever_the_global_rng(
    generator: DiffusersGenerator,
) -> None:
    torch.manual_seed(1)
    first = frames_of(generator, plan(seed=11), None, RecordingEvents())
    torch.manual_seed(2)  # the re-noising must not draw from torch's global generator
    torch.rand(1000)
    second = frames_of(generator, plan(seed=11), None, RecordingEvents())

    assert np.array_equal(first, second)


def test_the_same_image_job_and_seed_give_the_same_video(generator: DiffusersGenerator) -> None:
    first = frames_of(generator, plan(seed=3), picture(), RecordingEvents())
    second = frames_of(generator, plan(seed=3), picture(), RecordingEvents())

    assert np.array_equal(first, second)


def test_another_seed_gives_another_video(generator: DiffusersGenerator) -> None:
    first = frames_of(generator, plan(seed=11), None, RecordingEvents())
    second = frames_of(generator, plan(seed=12), None, RecordingEvents())

    assert not np.array_equal(first, second)


# -- the distilled schedule ---------------------------------------------------------------------


def test_the_transformer_runs_the_distilled_timesteps(generator: DiffusersGenerator) -> None:
    with transformer_calls(generator) as seen:
        generator.generate(plan(), None, RecordingEvents(), FrameCollector())

    assert [float(t.max()) for t in seen] == [float(t) for t in FASTWAN_TIMESTEPS]
    assert all(float(t.min()) == float(t.max()) for t in seen)  # T2V: every token at the step's t


def test_image_to_video_holds_the_first_frame_at_timestep_zero(generator: DiffusersGenerator) -> None:
    with transformer_calls(generator) as seen:
        generator.generate(plan(), picture(), RecordingEvents(), FrameCollector())

    assert [float(t.max()) for t in seen] == [float(t) for t in FASTWAN_TIMESTEPS]
    tokens_per_frame = (256 // 32) * (256 // 32)  # 16x VAE, 2x2 patches
    for timesteps in seen:
        assert torch.all(timesteps[0, :tokens_per_frame] == 0)
        assert torch.all(timesteps[0, tokens_per_frame:] == timesteps.max())


def test_the_image_conditions_the_first_latent_frame(generator: DiffusersGenerator) -> None:
    vae = generator.components.vae
    decoded: list[torch.Tensor] = []

    def observe(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        decoded.append(args[0].detach().clone())  # the latents the decoder is given, scaled

    handle = vae.post_quant_conv.register_forward_pre_hook(observe)
    image = picture()
    try:
        generator.generate(plan(), image, RecordingEvents(), FrameCollector())
    finally:
        handle.remove()

    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(127.5).sub(1.0)
    with torch.no_grad():
        encoded = vae.encode(pixels[None, :, None]).latent_dist.mode()
    first_latent_frame = decoded[0][:, :, :1]
    assert first_latent_frame.shape == encoded.shape
    torch.testing.assert_close(first_latent_frame, encoded, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(decoded[0][:, :, 1:2], encoded, atol=1e-2)  # the rest is generated


# -- events: progress and cancellation ----------------------------------------------------------


def test_stages_and_steps_are_reported_in_order_with_a_cancel_check_before_each_step_and_chunk(
    generator: DiffusersGenerator,
) -> None:
    events = RecordingEvents()

    generator.generate(plan(frames=9), None, events, FrameCollector())  # 3 latent frames: 3 decode chunks

    assert events.calls == [
        ("stage", Stage.TEXT_ENCODE),
        ("stage", Stage.DENOISE),
        ("check",),
        ("step", 1, 3),
        ("check",),
        ("step", 2, 3),
        ("check",),
        ("step", 3, 3),
        ("stage", Stage.DECODE),
        ("check",),
        ("check",),
        ("check",),
    ]


def test_cancellation_stops_before_the_next_step(generator: DiffusersGenerator) -> None:
    events = RecordingEvents(cancel_after=1)

    with transformer_calls(generator) as seen, pytest.raises(JobCancelled):
        generator.generate(plan(), None, events, FrameCollector())

    assert len(seen) == 1  # one step ran, the second never started
    assert ("stage", Stage.DECODE) not in events.calls
    assert [call for call in events.calls if call[0] == "step"] == [("step", 1, 3)]


def test_the_generator_runs_the_next_job_after_a_cancellation(generator: DiffusersGenerator) -> None:
    with pytest.raises(JobCancelled):
        generator.generate(plan(), None, RecordingEvents(cancel_after=0), FrameCollector())

    frames = frames_of(generator, plan(), None, RecordingEvents())

    assert frames.shape == (5, 256, 256, 3)


# -- failures -----------------------------------------------------------------------------------


def test_out_of_memory_becomes_gpu_out_of_memory_and_the_next_job_runs(generator: DiffusersGenerator) -> None:
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with transformer_calls(generator, fail_with=oom), pytest.raises(JobFailure) as caught:
        generator.generate(plan(), None, RecordingEvents(), FrameCollector())

    assert caught.value.code is ErrorCode.GPU_OUT_OF_MEMORY
    assert caught.value.retryable is True
    assert caught.value.fatal is False
    assert "5 frames at 256x256" in caught.value.message
    assert frames_of(generator, plan(), None, RecordingEvents()).shape == (5, 256, 256, 3)


def test_any_other_error_becomes_generation_failed(generator: DiffusersGenerator) -> None:
    with (
        transformer_calls(generator, fail_with=ValueError("shapes do not match")),
        pytest.raises(JobFailure) as caught,
    ):
        generator.generate(plan(), None, RecordingEvents(), FrameCollector())

    assert caught.value.code is ErrorCode.GENERATION_FAILED
    assert caught.value.retryable is False
    assert caught.value.fatal is False
    assert "ValueError: shapes do not match" in caught.value.message
    assert "Traceback" not in caught.value.message


def test_a_closed_generator_refuses_to_generate(tiny_dir: Path) -> None:
    loaded = DiffusersGenerator.load(tiny_settings(tiny_dir))
    loaded.close()
    loaded.close()  # idempotent

    with pytest.raises(RuntimeError, match="closed"):
        loaded.generate(plan(), None, RecordingEvents(), FrameCollector())


# -- loading ------------------------------------------------------------------------------------


def test_load_warms_up_and_reports_its_times(tiny_dir: Path) -> None:
    loaded = DiffusersGenerator.load(tiny_settings(tiny_dir, FASTWAN_WARMUP="1"))
    try:
        assert loaded.load_seconds > 0
        assert loaded.warmup_seconds > 0
        assert loaded.model_id == "tiny"
        assert loaded.device_name == "cpu"
    finally:
        loaded.close()


def test_streamed_weights_give_the_same_video_as_resident_ones(
    tiny_dir: Path, generator: DiffusersGenerator
) -> None:
    streamed = DiffusersGenerator.load(tiny_settings(tiny_dir, GPU_MEMORY_PROFILE="cpu-offload"))
    try:
        assert streamed.profile.name == "cpu-offload"
        frames = frames_of(streamed, plan(seed=5), picture(), RecordingEvents())
    finally:
        streamed.close()

    assert np.array_equal(frames, frames_of(generator, plan(seed=5), picture(), RecordingEvents()))


@pytest.mark.parametrize(("cap_gib", "expected"), [("10", "cpu-offload"), ("24", "text-encoder-offload")])
def test_auto_chooses_the_profile_from_the_memory_caps_test_aid(
    tiny_dir: Path, cap_gib: str, expected: str
) -> None:
    """``FASTWAN_GPU_MEMORY_CAP_GIB``: a machine runs as a card of that size would (here the CPU,
    which without the cap keeps everything resident)."""
    loaded = DiffusersGenerator.load(tiny_settings(tiny_dir, FASTWAN_GPU_MEMORY_CAP_GIB=cap_gib))
    try:
        assert loaded.profile.name == expected
    finally:
        loaded.close()


def test_an_attention_backend_that_cannot_run_is_a_startup_error(tiny_dir: Path) -> None:
    from diffusers.utils import is_flash_attn_available

    if is_flash_attn_available():
        pytest.skip("flash-attn is installed here")

    with pytest.raises(ConfigError, match="ATTENTION_BACKEND='flash' cannot be used here"):
        DiffusersGenerator.load(tiny_settings(tiny_dir, ATTENTION_BACKEND="flash"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_the_real_model_without_a_gpu_is_a_clear_startup_error(tmp_path: Path) -> None:
    settings = GeneratorSettings.from_env({"HF_HOME": str(tmp_path)})

    with pytest.raises(NoGpuError) as caught:
        DiffusersGenerator.load(settings)

    assert isinstance(caught.value, ConfigError)
    assert "FASTWAN_MODEL='FastVideo/FastWan2.2-TI2V-5B-Diffusers'" in str(caught.value)
    assert "CUDA GPU" in str(caught.value)
    assert not any(tmp_path.iterdir())  # refused before any download


@pytest.mark.parametrize(
    "model", ["FastVideo/FastWan2.2-TI2V-5B-Diffusers", "FastVideo/FastWan2.2-TI2V-5B-FullAttn-Diffusers"]
)
def test_an_uncached_model_offline_is_a_clear_error_naming_model_and_cache(
    tmp_path: Path, model: str
) -> None:
    settings = GeneratorSettings.from_env(
        {"FASTWAN_MODEL": model, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    )

    with pytest.raises(ModelUnavailableError) as caught:
        resolve_model_folder(settings)

    message = str(caught.value)
    assert repr(model) in message
    assert str(tmp_path / "hf" / "hub") in message
    assert "HF_HUB_OFFLINE" in message
