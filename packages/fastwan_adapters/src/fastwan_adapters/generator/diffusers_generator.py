"""The ``VideoGenerator`` port on diffusers: FastWan 2.2 text-to-video and image-to-video.

One set of modules serves two stock diffusers pipelines, ``WanPipeline`` (T2V) and
``WanImageToVideoPipeline`` (I2V), both with ``expand_timesteps=True`` (Wan 2.2 TI2V's
per-token timesteps, the first frame's tokens at t=0). The generator runs the three stages
itself so that each is reported and timed on its own: the prompt is encoded first, the
pipeline then only denoises (``output_type="latent"``), and the VAE decode follows, chunk
by chunk (``decoding``, or the tiny decoder's own stream), into the use case's frame sink.
Prompt embeddings are cached by (model, prompt) (``PROMPT_CACHE_MB``). The distilled
schedule and its seeded re-noising live in ``sampling.DistilledFlowScheduler``; the
self-attention is Video Sparse Attention for a checkpoint with compression gates (``vsa``).
Pipelines (``pipelines``), the stages of one run (``stages``), the steps (``denoising``) and the
device (``device``) have their own modules.
The plan's negative prompt is not used: without classifier-free guidance there is no
unconditional branch for it to steer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Final

import attrs
import torch
from PIL import Image

from fastwan_adapters.generator.device import release_memory, select_device, usable_memory
from fastwan_adapters.generator.errors import StartupStopped
from fastwan_adapters.generator.hub import resolve_model_folder
from fastwan_adapters.generator.hub_retry import NEVER_STOPPED, StopSignal
from fastwan_adapters.generator.loading import WanComponents, load_components
from fastwan_adapters.generator.pipelines import Pipelines
from fastwan_adapters.generator.placement import configure_transformer, place_components
from fastwan_adapters.generator.profiles import MemoryProfile, choose_profile
from fastwan_adapters.generator.prompt_cache import PromptCache
from fastwan_adapters.generator.prompts import MAX_TEXT_TOKENS
from fastwan_adapters.generator.settings import GeneratorSettings
from fastwan_adapters.generator.stages import GenerationStages
from fastwan_adapters.generator.video_decoder import VideoDecoder
from fastwan_adapters.generator.vsa import (
    PRODUCTION_GRIDS,
    AttentionChoice,
    check_fast_path,
    choose_attention,
)
from fastwan_core.errors import JobFailure
from fastwan_core.plan import GenerationPlan, model_size_for
from fastwan_core.ports import Frames, FrameSink, GeneratedVideo, GenerationEvents, Picture, Stage
from fastwan_core.values import Size

__all__ = ["MAX_TEXT_TOKENS", "DiffusersGenerator"]

log = logging.getLogger(__name__)

_GIB: Final = 1024**3
_WARMUP_FRAMES: Final = 5


@attrs.define
class DiffusersGenerator:
    """FastWan 2.2 on diffusers. Build it with :meth:`load`; one job at a time.

    Attributes:
        model_id: ``FASTWAN_MODEL`` as configured (a hub id, a folder, ``tiny`` or ``tiny-sparse``).
        device_name: the GPU's name, or ``"cpu"``.
        profile: the memory profile in force.
        attention: the self-attention that runs (VSA or dense).
        load_seconds: download (if any), load and placement; ``warmup_seconds``: the warm-up.
    """

    _stages: GenerationStages | None = attrs.field(alias="stages")
    _device: torch.device = attrs.field(alias="device")
    _settings: GeneratorSettings = attrs.field(alias="settings")
    profile: MemoryProfile
    attention: AttentionChoice
    _device_name: str = attrs.field(alias="device_name")
    _load_seconds: float = attrs.field(default=0.0, alias="load_seconds")
    _warmup_seconds: float = attrs.field(default=0.0, alias="warmup_seconds")
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def load(cls, settings: GeneratorSettings, *, stop: StopSignal = NEVER_STOPPED) -> DiffusersGenerator:
        """Find or download the model, load it, place it, and warm it up (unless told not to).

        ``stop`` set ends the downloads' waits at once, and the start-up between its steps.

        Raises:
            NoGpuError: a real model without a CUDA GPU.
            ModelUnavailableError: the model's files cannot be had or loaded.
            StartupStopped: ``stop`` was set.
        """
        started = time.perf_counter()
        device = select_device(settings)
        folder = resolve_model_folder(settings, stop=stop)
        _check_stop(stop, "before loading the model")
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        components = load_components(folder, dtype, model=settings.model)
        _check_stop(stop, "after loading the model")
        generator = cls.from_components(components, settings, device, stop=stop)
        generator._load_seconds = time.perf_counter() - started
        log.info("model %s loaded in %.1f s", settings.model, generator._load_seconds)
        if settings.warmup:
            _check_stop(stop, "before the warm-up")
            generator.warm_up()
        return generator

    @classmethod
    def from_components(
        cls,
        components: WanComponents,
        settings: GeneratorSettings,
        device: torch.device,
        *,
        stop: StopSignal = NEVER_STOPPED,
    ) -> DiffusersGenerator:
        """A generator over already-built modules (``load`` uses it; so does the benchmark).

        The attention is chosen (and VSA installed, its gates kept only if it runs) before the
        modules are moved or streamed to ``device`` as the memory profile says; VSA's fast path is
        then checked on the GPU.

        Raises:
            ConfigError: the attention asked for cannot run with this checkpoint or on this GPU.
        """
        total = usable_memory(device, settings.gpu_memory_cap_gib)
        profile = choose_profile(settings.memory_profile, total)
        attention = choose_attention(components.transformer, settings, device)
        place_components(components, profile, device)
        configure_transformer(components, settings, profile, vsa=attention.kind == "vsa")
        pipelines = Pipelines.over(components, VideoDecoder(components.vae, settings, device, stop=stop))
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        memory = f", {total / _GIB:.1f} GiB" if total else ""
        log.info(
            "generator on %s (%s%s): memory profile %s, transformer %s, self-attention %s, "
            "other attention %s, compile %s",
            device,
            name,
            memory,
            profile.name,
            components.transformer.dtype,
            attention.describe(),
            settings.attention_backend or "native",
            "on" if settings.torch_compile else "off",
        )
        prompt_cache = PromptCache(settings.prompt_cache_mb * 1024**2)
        generator = cls(
            stages=GenerationStages(pipelines, device, settings, profile, attention, prompt_cache),
            device=device,
            settings=settings,
            profile=profile,
            attention=attention,
            device_name=name,
        )
        generator._check_attention(grids=())
        return generator

    def warm_up(self) -> float:
        """One short image-to-video generation, so the first job pays no compilation or tuning.

        With VSA on the GPU, its kernel is compiled first for the production sizes (121 frames
        at 1280x704 and 704x1280), which the short generation alone would not reach.

        Returns the seconds it took (also in ``warmup_seconds``).

        Raises:
            RuntimeError: the warm-up failed; the worker cannot serve.
        """
        size = Size(256, 256) if self._settings.is_tiny else model_size_for(Size(720, 1280))
        plan = GenerationPlan(
            prompt="warm-up",
            negative_prompt=None,
            generated_size=size,
            output_size=size,
            num_frames=_WARMUP_FRAMES,
            fps=24,
            seed=0,
        )
        started = time.perf_counter()
        self._check_attention(grids=PRODUCTION_GRIDS)
        try:
            picture = Image.new("RGB", (size.width, size.height), (128, 128, 128))
            self.generate(plan, picture, _WARM_UP_EVENTS, _DROP_FRAMES)
        except JobFailure as failure:
            raise RuntimeError(f"warm-up generation failed: {failure.message}") from None
        self._warmup_seconds = time.perf_counter() - started
        log.info("warm-up (%d frames at %s) done in %.1f s", _WARMUP_FRAMES, size, self._warmup_seconds)
        return self._warmup_seconds

    # -- the port -----------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._settings.model

    @property
    def device_name(self) -> str:
        return self._device_name

    @property
    def load_seconds(self) -> float:
        return self._load_seconds

    @property
    def warmup_seconds(self) -> float:
        return self._warmup_seconds

    @property
    def components(self) -> WanComponents:
        """The loaded modules (for diagnostics, tests and the benchmark)."""
        return self._require_open().pipelines.components

    @property
    def vae_decoder(self) -> str:
        """``full`` or ``tiny`` (``FASTWAN_VAE_DECODER``)."""
        return self._settings.vae_decoder

    @property
    def prompt_cache(self) -> PromptCache:
        return self._require_open().prompt_cache

    def generate(
        self,
        plan: GenerationPlan,
        image: Picture | None,
        events: GenerationEvents,
        sink: FrameSink,
    ) -> GeneratedVideo:
        """Generate ``plan``: T2V without ``image``, I2V with it as the first frame.

        Puts the frames into ``sink`` chunk by chunk, each a ``(n, height, width, 3)`` uint8
        array at ``plan.generated_size``; returns the peak GPU memory of the run and how it ran.

        Raises:
            JobCancelled: from ``events.check_cancelled`` (before each step and each decode chunk).
            JobFailure: ``gpu_out_of_memory`` (retryable), ``generation_failed`` (``fatal`` when
                a CUDA error left the GPU unusable).
        """
        with self._lock:
            outcome = self._require_open().attempt(plan, image, events, sink)
            if isinstance(outcome, GeneratedVideo):
                return outcome
            # Raised only here, outside the except clause, so that no traceback keeps the
            # failed run's tensors alive while the memory is released.
            release_memory(self._device)
            raise outcome

    def close(self) -> None:
        """Drop the model and give its memory back. Idempotent; ``generate`` fails afterwards."""
        with self._lock:
            if self._stages is None:
                return
            self._stages = None
            release_memory(self._device)
            log.info("generator closed")

    # -- the attention check ------------------------------------------------------------

    def _check_attention(self, grids: tuple[tuple[int, int, int], ...]) -> None:
        """VSA's fast path on the GPU: checked against the reference, compiled for ``grids``."""
        transformer = self._require_open().pipelines.components.transformer
        config: Any = transformer.config  # a FrozenDict, typed as a dict
        check_fast_path(
            self.attention,
            heads=config.num_attention_heads,
            head_dim=config.attention_head_dim,
            device=self._device,
            dtype=transformer.dtype,
            grids=grids,
        )

    # -- memory and health ----------------------------------------------------------------

    def _require_open(self) -> GenerationStages:
        if self._stages is None:
            raise RuntimeError("the generator is closed")
        return self._stages


class _WarmUpEvents:
    """The warm-up's events: nobody listens to them and nothing cancels it."""

    def stage(self, stage: Stage) -> None:
        return None

    def step(self, index: int, total: int) -> None:
        return None

    def check_cancelled(self) -> None:
        return None


class _DropFrames:
    """The warm-up's frames: decoded as a job's are, then dropped."""

    def add(self, frames: Frames) -> None:
        return None


_WARM_UP_EVENTS: Final = _WarmUpEvents()
_DROP_FRAMES: Final = _DropFrames()


def _check_stop(stop: StopSignal, where: str) -> None:
    if stop.is_set():
        raise StartupStopped(f"the start-up was stopped {where} (the worker is leaving)")
