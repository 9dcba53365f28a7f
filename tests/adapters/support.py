"""Helpers of the adapter tests that load the tiny model."""

from __future__ import annotations

from pathlib import Path

from fastwan_adapters.generator import GeneratorSettings


def tiny_settings(tiny_dir: Path, **env: str) -> GeneratorSettings:
    """The generator's settings for ``FASTWAN_MODEL=tiny`` without a warm-up, plus ``env``."""
    return GeneratorSettings.from_env(
        {"FASTWAN_MODEL": "tiny", "FASTWAN_TINY_DIR": str(tiny_dir), "FASTWAN_WARMUP": "0", **env}
    )
