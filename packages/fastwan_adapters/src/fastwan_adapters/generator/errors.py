"""Start-up errors of the generator: the worker cannot serve, and says exactly why.

Both are ``ConfigError``s, so the apps' one start-up handler reports them like any other bad
setting; neither ever carries a token or a signed URL.
"""

from __future__ import annotations

from fastwan_adapters.config import ConfigError

__all__ = ["ModelUnavailableError", "NoGpuError"]


class NoGpuError(ConfigError):
    """A real model is configured and there is no CUDA GPU: refuse rather than crawl on the CPU."""


class ModelUnavailableError(ConfigError):
    """The model's files cannot be had: not cached while offline, not found, or not readable."""
