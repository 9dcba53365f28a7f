"""Start-up errors of the generator: the worker cannot serve, and says exactly why.

``NoGpuError`` and ``ModelUnavailableError`` are ``ConfigError``s, so the apps' one start-up
handler reports them like any other bad setting (buffer mode exits 2: the host stops the
container). ``ModelDownloadFailed`` is not: the settings may be right and the Hub only down
for a while, so the host should start the worker again later (buffer mode exits 1). None
ever carries a token or a signed URL.
"""

from __future__ import annotations

from fastwan_adapters.config import ConfigError

__all__ = ["ModelDownloadFailed", "ModelUnavailableError", "NoGpuError", "StartupStopped"]


class NoGpuError(ConfigError):
    """A real model is configured and there is no CUDA GPU: refuse rather than crawl on the CPU."""


class ModelUnavailableError(ConfigError):
    """The model's files cannot be had: not cached while offline, not found, or not readable."""


class ModelDownloadFailed(RuntimeError):
    """A download kept failing for a reason that passes (no connection, a timeout, HTTP 5xx or
    429) until its retry time ran out: a restart later may well succeed."""


class StartupStopped(Exception):
    """The stop signal given to the model's download or load was set: nothing failed, the worker
    is leaving (its exit status is the one of a stop, 0)."""
