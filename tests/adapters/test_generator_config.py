"""The generator's settings, memory profiles, distilled scheduler and failure classification (no model)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
import torch

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator import DEFAULT_MODEL, GeneratorSettings, choose_profile
from fastwan_adapters.generator.device import usable_memory
from fastwan_adapters.generator.failures import classify_failure
from fastwan_adapters.generator.hub import LoggingProgress, resolve_model_folder
from fastwan_adapters.generator.sampling import DistilledFlowScheduler, job_generator
from fastwan_core.errors import ErrorCode
from fastwan_core.job import Job
from fastwan_core.plan import FASTWAN_TIMESTEPS, plan_generation

GIB = 1024**3


# -- settings -----------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = GeneratorSettings.from_env({"HOME": "/home/worker"})

    assert settings.model == DEFAULT_MODEL
    assert settings.memory_profile == "auto"
    assert settings.torch_compile is False
    assert settings.attention_backend is None
    assert settings.warmup is True
    assert settings.vae_decode_dtype == "bf16"
    assert settings.offline is False
    assert settings.is_tiny is False
    assert settings.attention == "auto"
    assert settings.vsa_sparsity == 0.8
    assert (settings.vae_decoder, settings.tiny_decoder, settings.prompt_cache_mb) == ("full", None, 512)
    assert (settings.vae_channels_last, settings.cudnn_benchmark, settings.vae_compile) == (
        True,
        False,
        False,
    )
    assert settings.gpu_memory_cap_gib is None  # the test aid: the whole GPU


def test_the_decode_and_prompt_cache_variables_are_read(tmp_path: Path) -> None:
    weights = tmp_path / "taew2_2.pth"
    weights.write_bytes(b"weights")
    env = {
        "FASTWAN_VAE_DECODER": "TINY",
        "FASTWAN_TINY_DECODER": str(weights),
        "PROMPT_CACHE_MB": "0",
        "FASTWAN_VAE_CHANNELS_LAST": "0",
        "FASTWAN_CUDNN_BENCHMARK": "yes",
        "FASTWAN_VAE_COMPILE": "on",
    }
    settings = GeneratorSettings.from_env(env)

    assert (settings.vae_decoder, settings.tiny_decoder, settings.prompt_cache_mb) == (
        "tiny",
        str(weights),
        0,
    )
    assert (settings.vae_channels_last, settings.cudnn_benchmark, settings.vae_compile) == (False, True, True)
    hub = GeneratorSettings.from_env({**env, "FASTWAN_TINY_DECODER": "someone/taehv/taew2_2.pth"})
    assert hub.tiny_decoder == "someone/taehv/taew2_2.pth"


def test_the_tiny_decoder_of_the_tiny_model_needs_no_file() -> None:
    settings = GeneratorSettings.from_env({"FASTWAN_MODEL": "tiny", "FASTWAN_VAE_DECODER": "tiny"})

    assert (settings.vae_decoder, settings.tiny_decoder) == ("tiny", None)


def test_every_variable_is_read(tmp_path: Path) -> None:
    settings = GeneratorSettings.from_env(
        {
            "FASTWAN_MODEL": "FastVideo/FastWan2.2-TI2V-5B-FullAttn-Diffusers",
            "GPU_MEMORY_PROFILE": "Text-Encoder-Offload",
            "TORCH_COMPILE": "1",
            "ATTENTION_BACKEND": "flash",
            "FASTWAN_WARMUP": "off",
            "FASTWAN_VAE_DECODE_DTYPE": "fp32",
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_OFFLINE": "1",
            "FASTWAN_TINY_DIR": str(tmp_path / "tiny"),
            "FASTWAN_ATTENTION": "Dense",
            "FASTWAN_VSA_SPARSITY": "0.5",
            "FASTWAN_GPU_MEMORY_CAP_GIB": " 9.5 ",
        }
    )

    assert settings.model == "FastVideo/FastWan2.2-TI2V-5B-FullAttn-Diffusers"
    assert settings.memory_profile == "text-encoder-offload"
    assert settings.torch_compile is True
    assert settings.attention_backend == "flash"
    assert settings.warmup is False
    assert settings.vae_decode_dtype == "fp32"
    assert settings.hub_cache_dir == tmp_path / "hf" / "hub"
    assert settings.offline is True
    assert settings.tiny_dir == tmp_path / "tiny"
    assert settings.attention == "dense"
    assert settings.vsa_sparsity == 0.5
    assert settings.gpu_memory_cap_gib == 9.5


def test_tiny_sparse_is_a_tiny_model_built_beside_tiny(tmp_path: Path) -> None:
    settings = GeneratorSettings.from_env(
        {"FASTWAN_MODEL": "tiny-sparse", "FASTWAN_TINY_DIR": str(tmp_path / "t")}
    )

    assert settings.is_tiny
    assert settings.tiny_folder == tmp_path / "t-sparse"


@pytest.mark.parametrize("value", ["0", "0.8", "0.95", "0.999"])
def test_a_sparsity_in_zero_to_one_is_accepted(value: str) -> None:
    assert GeneratorSettings.from_env({"FASTWAN_VSA_SPARSITY": value}).vsa_sparsity == float(value)


def test_hf_hub_cache_wins_over_hf_home(tmp_path: Path) -> None:
    settings = GeneratorSettings.from_env(
        {"HF_HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(tmp_path / "c")}
    )

    assert settings.hub_cache_dir == tmp_path / "c"


def test_a_local_folder_is_a_model(tmp_path: Path) -> None:
    settings = GeneratorSettings.from_env({"FASTWAN_MODEL": str(tmp_path)})

    assert settings.local_folder == tmp_path


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"GPU_MEMORY_PROFILE": "huge"}, "GPU_MEMORY_PROFILE"),
        ({"TORCH_COMPILE": "maybe"}, "TORCH_COMPILE"),
        ({"ATTENTION_BACKEND": "warp-speed"}, "ATTENTION_BACKEND"),
        ({"FASTWAN_MODEL": "./no/such/folder"}, "FASTWAN_MODEL"),
        ({"FASTWAN_MODEL": "not a model id"}, "FASTWAN_MODEL"),
        ({"FASTWAN_VAE_DECODE_DTYPE": "fp8"}, "FASTWAN_VAE_DECODE_DTYPE"),
        ({"FASTWAN_WARMUP": "sometimes"}, "FASTWAN_WARMUP"),
        ({"FASTWAN_ATTENTION": "sparse"}, "FASTWAN_ATTENTION"),
        ({"FASTWAN_VSA_SPARSITY": "1"}, "FASTWAN_VSA_SPARSITY"),
        ({"FASTWAN_VSA_SPARSITY": "-0.1"}, "FASTWAN_VSA_SPARSITY"),
        ({"FASTWAN_VSA_SPARSITY": "nan"}, "FASTWAN_VSA_SPARSITY"),
        ({"FASTWAN_VSA_SPARSITY": "most"}, "FASTWAN_VSA_SPARSITY"),
        ({"FASTWAN_VAE_DECODER": "medium"}, "FASTWAN_VAE_DECODER"),
        ({"FASTWAN_VAE_DECODER": "tiny"}, "FASTWAN_TINY_DECODER is required"),
        ({"FASTWAN_TINY_DECODER": "just-a-name.pth"}, "FASTWAN_TINY_DECODER"),
        ({"FASTWAN_TINY_DECODER": "org/repo"}, "FASTWAN_TINY_DECODER"),
        ({"PROMPT_CACHE_MB": "-1"}, "PROMPT_CACHE_MB"),
        ({"PROMPT_CACHE_MB": "lots"}, "PROMPT_CACHE_MB"),
        ({"FASTWAN_VAE_COMPILE": "maybe"}, "FASTWAN_VAE_COMPILE"),
        ({"FASTWAN_GPU_MEMORY_CAP_GIB": "0"}, "FASTWAN_GPU_MEMORY_CAP_GIB must be a number of GiB above 0"),
        ({"FASTWAN_GPU_MEMORY_CAP_GIB": "-10"}, "FASTWAN_GPU_MEMORY_CAP_GIB must be a number of GiB above 0"),
        ({"FASTWAN_GPU_MEMORY_CAP_GIB": "ten"}, "FASTWAN_GPU_MEMORY_CAP_GIB must be a number"),
        ({"FASTWAN_GPU_MEMORY_CAP_GIB": "nan"}, "FASTWAN_GPU_MEMORY_CAP_GIB must be a number"),
        ({"FASTWAN_GPU_MEMORY_CAP_GIB": "inf"}, "FASTWAN_GPU_MEMORY_CAP_GIB must be a number"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        GeneratorSettings.from_env(env)


def test_a_file_is_not_a_model_folder(tmp_path: Path) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")

    with pytest.raises(ConfigError, match="FASTWAN_MODEL must be a model folder"):
        GeneratorSettings.from_env({"FASTWAN_MODEL": str(file)})


def test_reading_settings_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from fastwan_adapters.generator import GeneratorSettings\n"
        "GeneratorSettings.from_env({'GPU_MEMORY_PROFILE': 'cpu-offload'})\n"
        "print(sorted(name for name in ('torch', 'diffusers', 'transformers') if name in sys.modules))\n"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


def test_a_cached_model_is_found_offline(tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--FastVideo--FastWan2.2-TI2V-5B-Diffusers"
    snapshot = repo / "snapshots" / commit
    (snapshot / "transformer").mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (snapshot / "transformer" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    settings = GeneratorSettings.from_env({"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})

    assert resolve_model_folder(settings) == snapshot


def test_download_progress_goes_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fastwan_adapters.generator.hub"):
        progress = LoggingProgress(desc="Downloading bytes", total=2_000_000_000, unit="B", unit_scale=True)
        progress.update(500_000_000)
        progress.close()

    assert caplog.messages == ["download: Downloading bytes: 0.50 GB of 2.00 GB (25%) (done)"]


# -- memory profiles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total_gib", "expected"),
    [
        (79.2, "resident"),  # H100 80 GB
        (39.4, "resident"),  # A100 40 GB
        (23.6, "text-encoder-offload"),  # RTX 4090 / 3090
        (15.7, "cpu-offload"),  # 16 GB cards
        (9.8, "cpu-offload"),  # RTX 3080 10 GB
    ],
)
def test_auto_chooses_from_the_gpus_memory(total_gib: float, expected: str) -> None:
    assert choose_profile("auto", int(total_gib * GIB)).name == expected


def test_an_explicit_profile_wins_and_the_cpu_keeps_everything_resident() -> None:
    assert choose_profile("cpu-offload", 80 * GIB).name == "cpu-offload"
    assert choose_profile("auto", None).name == "resident"
    offload = choose_profile("cpu-offload", None)
    assert (offload.stream_text_encoder, offload.stream_transformer, offload.vae_tiling) == (True, True, True)
    middle = choose_profile("text-encoder-offload", None)
    assert (middle.stream_text_encoder, middle.stream_transformer) == (True, False)


@pytest.mark.parametrize(
    ("cap_gib", "expected"),
    [(10.0, "cpu-offload"), (16.0, "cpu-offload"), (24.0, "text-encoder-offload"), (40.0, "resident")],
)
def test_auto_chooses_from_the_memory_cap_on_the_cpu(cap_gib: float, expected: str) -> None:
    usable = usable_memory(torch.device("cpu"), cap_gib)

    assert usable == int(cap_gib * GIB)
    assert choose_profile("auto", usable).name == expected


def test_without_a_cap_the_cpu_has_no_gpu_memory_to_choose_from() -> None:
    assert usable_memory(torch.device("cpu"), None) is None


@attrs.define
class FakeCuda:
    """What ``usable_memory`` asks of torch.cuda on a GPU of ``total`` bytes (none here)."""

    total: int
    fractions: list[tuple[float, torch.device]] = attrs.field(factory=list)

    def get_device_properties(self, device: torch.device) -> Any:
        return SimpleNamespace(total_memory=self.total, name="NVIDIA H100 80GB HBM3")

    def set_per_process_memory_fraction(self, fraction: float, device: torch.device) -> None:
        self.fractions.append((fraction, device))


def test_a_cap_holds_pytorchs_allocator_to_that_share_of_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = FakeCuda(total=80 * GIB)
    monkeypatch.setattr(torch.cuda, "get_device_properties", cuda.get_device_properties)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", cuda.set_per_process_memory_fraction)
    gpu = torch.device("cuda", 0)

    assert choose_profile("auto", usable_memory(gpu, 10.0)).name == "cpu-offload"
    assert cuda.fractions == [(0.125, gpu)]
    assert usable_memory(gpu, None) == 80 * GIB  # unset: the whole GPU, nothing capped
    assert cuda.fractions == [(0.125, gpu)]
    with pytest.raises(ConfigError, match=r"FASTWAN_GPU_MEMORY_CAP_GIB=96 is more than this GPU's 80.0 GiB"):
        usable_memory(gpu, 96.0)
    assert cuda.fractions == [(0.125, gpu)]


# -- the distilled scheduler --------------------------------------------------------------------


def test_the_scheduler_runs_the_prepared_schedule_with_sigma_t_over_1000() -> None:
    scheduler = DistilledFlowScheduler.create()
    scheduler.prepare(FASTWAN_TIMESTEPS, job_generator(0))

    scheduler.set_timesteps(3)

    assert scheduler.timesteps.tolist() == [1000.0, 757.0, 522.0]
    assert scheduler.sigmas.tolist() == pytest.approx([1.0, 0.757, 0.522, 0.0])


def test_a_step_predicts_the_clean_latent_and_renoises_it_from_the_jobs_generator() -> None:
    scheduler = DistilledFlowScheduler.create()
    scheduler.prepare(FASTWAN_TIMESTEPS, job_generator(42))
    scheduler.set_timesteps(3)
    scheduler.set_begin_index(0)
    sample = torch.randn(1, 2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    velocity = torch.randn(1, 2, 1, 4, 4, generator=torch.Generator().manual_seed(2)).bfloat16()

    result = scheduler.step(velocity, scheduler.timesteps[0], sample, return_dict=False)[0]

    clean = sample - 1.0 * velocity.float()
    noise = torch.randn(sample.shape, generator=job_generator(42))
    torch.testing.assert_close(result, (1 - 0.757) * clean + 0.757 * noise)
    assert result.dtype == torch.float32  # latents stay fp32 between steps


def test_the_last_step_keeps_the_clean_latent() -> None:
    scheduler = DistilledFlowScheduler.create()
    scheduler.prepare((1000,), job_generator(0))
    scheduler.set_timesteps(1)
    scheduler.set_begin_index(0)
    sample, velocity = torch.ones(1, 1, 1, 2, 2), torch.full((1, 1, 1, 2, 2), 0.25)

    result = scheduler.step(velocity, scheduler.timesteps[0], sample, return_dict=False)[0]

    torch.testing.assert_close(result, sample - velocity)


def test_a_pipeline_asking_for_another_step_count_is_refused() -> None:
    scheduler = DistilledFlowScheduler.create()
    scheduler.prepare(FASTWAN_TIMESTEPS, job_generator(0))

    with pytest.raises(ValueError, match="3 steps"):
        scheduler.set_timesteps(4)


def test_a_step_without_a_prepared_generator_is_refused() -> None:
    scheduler = DistilledFlowScheduler.create()
    scheduler.set_timesteps(3)
    scheduler.set_begin_index(0)

    with pytest.raises(RuntimeError, match="prepare"):
        scheduler.step(torch.zeros(1, 1, 1, 2, 2), scheduler.timesteps[0], torch.zeros(1, 1, 1, 2, 2))


# -- failure classification ---------------------------------------------------------------------

PLAN = plan_generation(Job(musetalk_job_id="j", prompt="secret prompt text", width=720, height=1280))


def test_out_of_memory_is_retryable_and_not_fatal() -> None:
    failure = classify_failure(
        torch.cuda.OutOfMemoryError("CUDA out of memory"), PLAN, "resident", lambda: False
    )

    assert (failure.code, failure.retryable, failure.fatal) == (ErrorCode.GPU_OUT_OF_MEMORY, True, False)
    assert f"121 frames at {PLAN.generated_size} (memory profile resident)" in failure.message


def test_a_cuda_error_that_leaves_the_gpu_unusable_is_fatal() -> None:
    error = RuntimeError(
        "CUDA error: an illegal memory access was encountered\nCompile with TORCH_USE_CUDA_DSA"
    )

    failure = classify_failure(error, PLAN, "resident", lambda: False)

    assert (failure.code, failure.retryable, failure.fatal) == (ErrorCode.GENERATION_FAILED, True, True)
    assert "illegal memory access" in failure.message
    assert "TORCH_USE_CUDA_DSA" not in failure.message  # first line only
    assert "secret prompt" not in failure.message


def test_a_cuda_error_that_leaves_the_gpu_working_is_an_ordinary_failure() -> None:
    failure = classify_failure(RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED"), PLAN, "resident", lambda: True)

    assert (failure.code, failure.retryable, failure.fatal) == (ErrorCode.GENERATION_FAILED, False, False)


def test_the_gpu_is_probed_only_for_cuda_errors() -> None:
    probes: list[bool] = []

    def probe() -> bool:
        probes.append(True)
        return False

    failure = classify_failure(KeyError("latents"), PLAN, "resident", probe)

    assert (failure.code, failure.fatal) == (ErrorCode.GENERATION_FAILED, False)
    assert probes == []
