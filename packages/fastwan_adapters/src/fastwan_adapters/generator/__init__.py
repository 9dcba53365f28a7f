"""The FastWan 2.2 generator on diffusers: the core's ``VideoGenerator`` port.

``GeneratorSettings`` is light (no torch); ``DiffusersGenerator`` pulls in torch and
diffusers on first use, so apps can read their settings without paying for that import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastwan_adapters.generator.errors import (
    ModelDownloadFailed,
    ModelUnavailableError,
    NoGpuError,
    StartupStopped,
)
from fastwan_adapters.generator.profiles import PROFILES, MemoryProfile, choose_profile
from fastwan_adapters.generator.settings import DEFAULT_MODEL, TINY_MODEL, GeneratorSettings

if TYPE_CHECKING:
    from fastwan_adapters.generator.diffusers_generator import DiffusersGenerator

__all__ = [
    "DEFAULT_MODEL",
    "PROFILES",
    "TINY_MODEL",
    "DiffusersGenerator",
    "GeneratorSettings",
    "MemoryProfile",
    "ModelDownloadFailed",
    "ModelUnavailableError",
    "NoGpuError",
    "StartupStopped",
    "choose_profile",
]


def __getattr__(name: str) -> Any:
    if name == "DiffusersGenerator":
        from fastwan_adapters.generator.diffusers_generator import DiffusersGenerator

        return DiffusersGenerator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
