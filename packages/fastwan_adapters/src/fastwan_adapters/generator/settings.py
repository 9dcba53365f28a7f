"""The generator's settings, read once from the environment at start-up.

Everything that can be wrong with the configuration is found here, before minutes are spent
downloading or loading a model: every error names the variable at fault. This module imports
neither torch nor diffusers (the apps read settings long before they load the model), except
to check an ``ATTENTION_BACKEND`` name against the backends diffusers knows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

import attrs

from fastwan_adapters.config import ConfigError, env_bool, env_choice, env_float, env_int, env_str
from fastwan_adapters.generator.hub_retry import DownloadRetry
from fastwan_adapters.generator.tiny_latents import LATENT_CHOICES, LatentChoice

__all__ = [
    "ATTENTION_MODES",
    "DEFAULT_MODEL",
    "DEFAULT_VSA_SPARSITY",
    "MEMORY_PROFILES",
    "TINY_MODEL",
    "TINY_MODELS",
    "TINY_SPARSE_MODEL",
    "AttentionMode",
    "GeneratorSettings",
    "MemoryProfileName",
    "VaeDecodeDtype",
    "VaeDecoderName",
]

#: The distilled FastWan 2.2 checkpoint this worker is built for.
DEFAULT_MODEL: Final = "FastVideo/FastWan2.2-TI2V-5B-Diffusers"
#: ``FASTWAN_MODEL`` value selecting the tiny random-weight model (tests, CPU smoke runs).
TINY_MODEL: Final = "tiny"
#: The tiny model with random VSA compression gates, stored as FastWan stores them.
TINY_SPARSE_MODEL: Final = "tiny-sparse"
TINY_MODELS: Final = (TINY_MODEL, TINY_SPARSE_MODEL)

AttentionMode = Literal["auto", "vsa", "dense"]
#: ``FASTWAN_ATTENTION`` values; ``auto`` runs VSA exactly when the checkpoint has gates.
ATTENTION_MODES: Final[tuple[AttentionMode, ...]] = ("auto", "vsa", "dense")
#: The sparsity FastWan 2.2 was distilled with.
DEFAULT_VSA_SPARSITY: Final = 0.8

MemoryProfileName = Literal["auto", "resident", "text-encoder-offload", "cpu-offload"]
#: ``GPU_MEMORY_PROFILE`` values; ``auto`` chooses from the GPU's total memory at load.
MEMORY_PROFILES: Final[tuple[MemoryProfileName, ...]] = (
    "auto",
    "resident",
    "text-encoder-offload",
    "cpu-offload",
)
VaeDecodeDtype = Literal["bf16", "fp32"]
VaeDecoderName = Literal["full", "tiny"]
#: ``PROMPT_CACHE_MB``'s default: a UMT5-XXL embedding is 4 MiB, so about 128 prompts.
DEFAULT_PROMPT_CACHE_MB: Final = 512

_HUB_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_TINY_DIR_NAME: Final = "tiny-wan2.2-ti2v-v1"


@attrs.frozen(kw_only=True)
class GeneratorSettings:
    """How to load and run the model.

    Attributes:
        model: ``FASTWAN_MODEL``: a Hugging Face model id, a local folder in diffusers layout,
            or ``tiny``. Anything but ``tiny`` needs a CUDA GPU.
        memory_profile: ``GPU_MEMORY_PROFILE``: where the weights live (see ``profiles``).
        torch_compile: ``TORCH_COMPILE``: regional ``torch.compile`` of the transformer blocks.
        attention_backend: ``ATTENTION_BACKEND``: one of diffusers' attention backends, or None
            for PyTorch's scaled-dot-product attention.
        warmup: ``FASTWAN_WARMUP`` (default on): one short generation at load, so that the
            first job pays no compilation or kernel selection.
        vae_decode_dtype: ``FASTWAN_VAE_DECODE_DTYPE``: ``bf16`` (default) decodes under bf16
            autocast on CUDA, about twice as fast, with the VAE's weights and its encoding of
            the first frame kept in fp32; ``fp32`` decodes in full precision.
        hub_cache_dir: where Hugging Face models are cached: ``HF_HUB_CACHE``, else
            ``$HF_HOME/hub``, else None for huggingface_hub's own default.
        offline: ``HF_HUB_OFFLINE``: never download; the model must already be cached.
        hub_endpoint: ``HF_ENDPOINT``: the Hub (a mirror, a test double); None: huggingface.co.
        download_retry: ``FASTWAN_DOWNLOAD_RETRY_*``: how long a download failing for a
            passing reason (no connection, HTTP 5xx or 429) is retried before the worker exits
            to be restarted.
        tiny_dir: ``FASTWAN_TINY_DIR``: where the tiny model is built and reused
            (``tiny-sparse`` beside it, in ``{tiny_dir}-sparse``).
        attention: ``FASTWAN_ATTENTION``: ``auto`` (VSA for a checkpoint with compression
            gates, dense otherwise), ``vsa`` (a checkpoint without gates is an error) or
            ``dense`` (a sparse checkpoint then runs, with a warning, as it was not trained).
        vsa_sparsity: ``FASTWAN_VSA_SPARSITY``: the share of key cubes VSA skips, 0 <= s < 1.
        vae_decoder: ``FASTWAN_VAE_DECODER``: ``full`` (default), Wan 2.2's own VAE decoder;
            ``tiny``, a TAEHV-format decoder about 50x cheaper, at a quality cost.
        tiny_decoder: ``FASTWAN_TINY_DECODER``: the tiny decoder's weights, a local file or a
            hub file ``organisation/repository/file``; unset with the tiny model: random weights.
        tiny_decoder_latents: ``FASTWAN_TINY_DECODER_LATENTS``: the latents the tiny decoder is
            fed: ``auto`` (default) by its file name (``tiny_latents``), or ``normalised`` /
            ``denormalised`` for a file whose name does not say.
        prompt_cache_mb: ``PROMPT_CACHE_MB``: memory for cached prompt embeddings; 0 turns it off.
        vae_channels_last: ``FASTWAN_VAE_CHANNELS_LAST`` (default on): the full decoder's 3-D
            convolution weights in ``channels_last_3d``, which spares cuDNN its NCDHW<->NDHWC
            conversions; published Wan VAE measurements: +9% (PyTorch <= 2.8) to +78% (2.9,
            around a cuDNN 9.8 slowdown), LightX2V PR 860. Not yet measured by our GPU bench.
        cudnn_benchmark: ``FASTWAN_CUDNN_BENCHMARK``: cuDNN picks the fastest convolution per shape.
        vae_compile: ``FASTWAN_VAE_COMPILE``: ``torch.compile`` the full decoder (paid in the warm-up).
        gpu_memory_cap_gib: ``FASTWAN_GPU_MEMORY_CAP_GIB``, a test aid, unset in production: the
            GPU memory this process may use (``torch.cuda.set_per_process_memory_fraction``),
            from which ``GPU_MEMORY_PROFILE=auto`` then chooses, so that a big GPU runs as a
            10 GB card would (``bench/gpu_session.sh``); on the CPU it only chooses the profile.
    """

    model: str = DEFAULT_MODEL
    memory_profile: MemoryProfileName = "auto"
    torch_compile: bool = False
    attention_backend: str | None = None
    warmup: bool = True
    vae_decode_dtype: VaeDecodeDtype = "bf16"
    hub_cache_dir: Path | None = None
    offline: bool = False
    hub_endpoint: str | None = None
    download_retry: DownloadRetry = attrs.field(factory=DownloadRetry)
    tiny_dir: Path = attrs.field(factory=lambda: _default_tiny_dir({}))
    attention: AttentionMode = "auto"
    vsa_sparsity: float = DEFAULT_VSA_SPARSITY
    vae_decoder: VaeDecoderName = "full"
    tiny_decoder: str | None = None
    tiny_decoder_latents: LatentChoice = "auto"
    prompt_cache_mb: int = DEFAULT_PROMPT_CACHE_MB
    vae_channels_last: bool = True
    cudnn_benchmark: bool = False
    vae_compile: bool = False
    gpu_memory_cap_gib: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GeneratorSettings:
        """Read the settings from ``env`` (``os.environ`` in the apps).

        Raises:
            ConfigError: naming the variable whose value is wrong.
        """
        model = _model(env_str(env, "FASTWAN_MODEL", DEFAULT_MODEL) or DEFAULT_MODEL)
        profile = env_choice(env, "GPU_MEMORY_PROFILE", MEMORY_PROFILES, "auto") or "auto"
        decode = env_choice(env, "FASTWAN_VAE_DECODE_DTYPE", ("bf16", "fp32"), "bf16") or "bf16"
        tiny_dir = env_str(env, "FASTWAN_TINY_DIR")
        vae_decoder = env_choice(env, "FASTWAN_VAE_DECODER", ("full", "tiny"), "full") or "full"
        tiny_decoder = _tiny_decoder(env_str(env, "FASTWAN_TINY_DECODER"))
        latents = env_choice(env, "FASTWAN_TINY_DECODER_LATENTS", LATENT_CHOICES, "auto") or "auto"
        if vae_decoder == "tiny" and tiny_decoder is None and not _is_tiny_model(model):
            raise ConfigError(
                "FASTWAN_TINY_DECODER is required with FASTWAN_VAE_DECODER=tiny: a local file or a hub file "
                "(organisation/repository/file) of a TAEHV-format Wan 2.2 decoder, e.g. taew2_2.pth"
            )
        return cls(
            model=model,
            memory_profile=profile,  # type: ignore[arg-type]  # checked by env_choice
            torch_compile=env_bool(env, "TORCH_COMPILE", False),
            attention_backend=_attention_backend(env_str(env, "ATTENTION_BACKEND")),
            warmup=env_bool(env, "FASTWAN_WARMUP", True),
            vae_decode_dtype=decode,  # type: ignore[arg-type]  # checked by env_choice
            hub_cache_dir=_hub_cache_dir(env),
            offline=env_bool(env, "HF_HUB_OFFLINE", False),
            hub_endpoint=_hub_endpoint(env_str(env, "HF_ENDPOINT")),
            download_retry=DownloadRetry.from_env(env),
            tiny_dir=Path(tiny_dir).expanduser() if tiny_dir else _default_tiny_dir(env),
            attention=env_choice(env, "FASTWAN_ATTENTION", ATTENTION_MODES, "auto") or "auto",  # type: ignore[arg-type]
            vsa_sparsity=_sparsity(env_str(env, "FASTWAN_VSA_SPARSITY")),
            vae_decoder=vae_decoder,  # type: ignore[arg-type]  # checked by env_choice
            tiny_decoder=tiny_decoder,
            tiny_decoder_latents=latents,  # type: ignore[arg-type]  # checked by env_choice
            prompt_cache_mb=env_int(env, "PROMPT_CACHE_MB", DEFAULT_PROMPT_CACHE_MB, minimum=0),
            vae_channels_last=env_bool(env, "FASTWAN_VAE_CHANNELS_LAST", True),
            cudnn_benchmark=env_bool(env, "FASTWAN_CUDNN_BENCHMARK", False),
            vae_compile=env_bool(env, "FASTWAN_VAE_COMPILE", False),
            gpu_memory_cap_gib=_memory_cap_gib(env),
        )

    @property
    def is_tiny(self) -> bool:
        """``tiny`` or ``tiny-sparse``: built locally, allowed on the CPU."""
        return self.model in TINY_MODELS

    @property
    def tiny_folder(self) -> Path:
        """Where the configured tiny model lives (only meaningful when ``is_tiny``)."""
        if self.model == TINY_SPARSE_MODEL:
            return self.tiny_dir.with_name(f"{self.tiny_dir.name}-sparse")
        return self.tiny_dir

    @property
    def local_folder(self) -> Path | None:
        """The model's folder when ``model`` names one on disk, else None (a hub id or tiny)."""
        if self.is_tiny:
            return None
        path = Path(self.model).expanduser()
        return path if path.is_dir() else None


def _model(value: str) -> str:
    if value in TINY_MODELS or _HUB_ID.fullmatch(value):
        # A hub id may also be a relative folder that exists: the folder wins, as in diffusers.
        return value
    path = Path(value).expanduser()
    if path.is_dir():
        return value
    if path.exists():
        raise ConfigError(f"FASTWAN_MODEL must be a model folder, got the file {value!r}")
    raise ConfigError(
        f"FASTWAN_MODEL must be {TINY_MODEL!r}, {TINY_SPARSE_MODEL!r}, a Hugging Face model id "
        f"(organisation/name) or an existing folder, got {value!r}"
    )


def _sparsity(value: str | None) -> float:
    if value is None:
        return DEFAULT_VSA_SPARSITY
    try:
        sparsity = float(value)
    except ValueError:
        sparsity = float("nan")
    if not 0.0 <= sparsity < 1.0:  # also refuses nan
        raise ConfigError(
            f"FASTWAN_VSA_SPARSITY must be a number with 0 <= s < 1 (the share of key cubes skipped; "
            f"FastWan was trained with {DEFAULT_VSA_SPARSITY}), got {value!r}"
        )
    return sparsity


def _memory_cap_gib(env: Mapping[str, str]) -> float | None:
    if env_str(env, "FASTWAN_GPU_MEMORY_CAP_GIB") is None:
        return None
    cap = env_float(env, "FASTWAN_GPU_MEMORY_CAP_GIB", 0.0)
    if cap <= 0:
        raise ConfigError(
            f"FASTWAN_GPU_MEMORY_CAP_GIB must be a number of GiB above 0 (a test aid: leave it unset "
            f"to use the whole GPU), got {cap:g}"
        )
    return cap


def _is_tiny_model(model: str) -> bool:
    return GeneratorSettings(model=model).is_tiny


def _tiny_decoder(value: str | None) -> str | None:
    """A local file, or a hub file ``organisation/repository/path``; checked before any download."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        return str(path)
    if path.exists():
        raise ConfigError(f"FASTWAN_TINY_DECODER must name a weights file, got the folder {value!r}")
    parts = value.split("/")
    if len(parts) >= 3 and _HUB_ID.fullmatch("/".join(parts[:2])) and all(parts[2:]):
        return value
    raise ConfigError(
        "FASTWAN_TINY_DECODER must be an existing file or a hub file organisation/repository/file "
        f"(organisation/repository/taew2_2.pth, say), got {value!r}"
    )


def _attention_backend(value: str | None) -> str | None:
    if value is None:
        return None
    # Imported here: the list lives in diffusers, and it changes between releases.
    from diffusers.models.attention_dispatch import AttentionBackendName

    names = sorted(backend.value for backend in AttentionBackendName if not backend.value.startswith("_"))
    if value not in {backend.value for backend in AttentionBackendName}:
        raise ConfigError(f"ATTENTION_BACKEND must be one of {', '.join(names)}, got {value!r}")
    return value


def _hub_endpoint(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"HF_ENDPOINT must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _hub_cache_dir(env: Mapping[str, str]) -> Path | None:
    if (cache := env_str(env, "HF_HUB_CACHE")) is not None:
        return Path(cache).expanduser()
    if (home := env_str(env, "HF_HOME")) is not None:
        return Path(home).expanduser() / "hub"
    return None


def _default_tiny_dir(env: Mapping[str, str]) -> Path:
    cache = env_str(env, "XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "fastwan" / _TINY_DIR_NAME
