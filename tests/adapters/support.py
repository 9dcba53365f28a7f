"""Helpers of the adapter tests that load the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastwan_adapters.generator import GeneratorSettings
from fastwan_adapters.testing import FrameCollector
from fastwan_core.plan import GenerationPlan
from fastwan_core.ports import GenerationEvents, Picture, VideoGenerator


def tiny_settings(tiny_dir: Path, **env: str) -> GeneratorSettings:
    """The generator's settings for ``FASTWAN_MODEL=tiny`` without a warm-up, plus ``env``."""
    return GeneratorSettings.from_env(
        {"FASTWAN_MODEL": "tiny", "FASTWAN_TINY_DIR": str(tiny_dir), "FASTWAN_WARMUP": "0", **env}
    )


def frames_of(
    generator: VideoGenerator, plan: GenerationPlan, image: Picture | None, events: GenerationEvents
) -> np.ndarray:
    """Every frame of one generation, ``(num_frames, height, width, 3)``, collected from its sink."""
    sink = FrameCollector()
    generator.generate(plan, image, events, sink)
    return sink.frames
