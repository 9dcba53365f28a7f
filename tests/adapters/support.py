"""Helpers of the adapter tests: the tiny model's settings, the orchestrator client on a loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fastwan_adapters.generator import GeneratorSettings
from fastwan_adapters.orchestrator import OrchestratorClient
from fastwan_adapters.testing import FrameCollector
from fastwan_core.plan import GenerationPlan
from fastwan_core.ports import GenerationEvents, Picture, VideoGenerator

#: Runs a coroutine to its end (the ``run`` fixture).
Run = Callable[[Awaitable[Any]], Any]


def tiny_settings(tiny_dir: Path, **env: str) -> GeneratorSettings:
    """The generator's settings for ``FASTWAN_MODEL=tiny`` without a warm-up, plus ``env``."""
    return GeneratorSettings.from_env(
        {"FASTWAN_MODEL": "tiny", "FASTWAN_TINY_DIR": str(tiny_dir), "FASTWAN_WARMUP": "0", **env}
    )


@contextmanager
def opened(run: Run, *args: Any, **options: Any) -> Iterator[OrchestratorClient]:
    """An ``OrchestratorClient(*args, **options)``, closed on ``run``'s loop at the end."""
    client = OrchestratorClient(*args, **options)
    try:
        yield client
    finally:
        run(client.aclose())


def frames_of(
    generator: VideoGenerator, plan: GenerationPlan, image: Picture | None, events: GenerationEvents
) -> np.ndarray:
    """Every frame of one generation, ``(num_frames, height, width, 3)``, collected from its sink."""
    sink = FrameCollector()
    generator.generate(plan, image, events, sink)
    return sink.frames
