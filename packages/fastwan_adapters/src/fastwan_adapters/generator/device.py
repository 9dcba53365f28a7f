"""The device the generator runs on: which one, its peak memory, and whether it still works.

Production never falls back silently: a real model without a CUDA GPU is a start-up error,
and only the tiny models run on the CPU. After a CUDA error the GPU is probed with a trivial
kernel, because many such errors leave the context unusable for good (the job is then
``fatal`` and the worker restarts).
"""

from __future__ import annotations

import gc
import logging
from typing import Final

import torch

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator.errors import NoGpuError
from fastwan_adapters.generator.settings import GeneratorSettings

__all__ = [
    "gpu_usable",
    "peak_memory_gib",
    "release_memory",
    "reset_peak_memory",
    "select_device",
    "usable_memory",
]

log = logging.getLogger(__name__)

_GIB: Final = 1024**3


def select_device(settings: GeneratorSettings) -> torch.device:
    """The CUDA GPU, or the CPU for the tiny models only.

    Raises:
        NoGpuError: a real model is configured and no CUDA GPU is visible.
    """
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if settings.is_tiny:
        return torch.device("cpu")
    raise NoGpuError(
        f"FASTWAN_MODEL={settings.model!r} needs a CUDA GPU and none is visible (torch {torch.__version__}, "
        f"built for CUDA {torch.version.cuda or 'none'}); run with a GPU, or set FASTWAN_MODEL=tiny for a "
        "CPU smoke run with random weights"
    )


def usable_memory(device: torch.device, cap_gib: float | None) -> int | None:
    """The memory the model may use on ``device``, bytes: the GPU's total, or the test aid's cap.

    With ``FASTWAN_GPU_MEMORY_CAP_GIB`` set, PyTorch's allocator is held to the cap (what CUDA
    itself takes for its context, about 0.5 GiB, is outside it, as on a real card of that
    size it is inside the total) and the cap is returned, for the memory profile to be chosen
    from. None on the CPU without a cap.

    Raises:
        ConfigError: the cap is more than the GPU has.
    """
    cap = None if cap_gib is None else int(cap_gib * _GIB)
    if device.type != "cuda":
        return cap
    total = int(torch.cuda.get_device_properties(device).total_memory)
    if cap is None:
        return total
    if cap > total:
        raise ConfigError(
            f"FASTWAN_GPU_MEMORY_CAP_GIB={cap_gib:g} is more than this GPU's {total / _GIB:.1f} GiB"
        )
    torch.cuda.set_per_process_memory_fraction(cap / total, device)
    log.warning(
        "FASTWAN_GPU_MEMORY_CAP_GIB=%g (a test aid): PyTorch may use %.1f of this GPU's %.1f GiB",
        cap_gib,
        cap / _GIB,
        total / _GIB,
    )
    return cap


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float:
    """The most GPU memory allocated since the last reset, GiB (0 on the CPU)."""
    if device.type != "cuda":
        return 0.0
    return float(torch.cuda.max_memory_allocated(device)) / _GIB


def release_memory(device: torch.device) -> None:
    """Collect garbage and give cached GPU memory back (after a failed run, or at close)."""
    gc.collect()
    if device.type == "cuda":
        try:
            torch.cuda.empty_cache()
        except RuntimeError:  # a broken GPU: the failure already says so
            log.debug("empty_cache failed", exc_info=True)


def gpu_usable(device: torch.device) -> bool:
    """Whether the GPU still runs a trivial kernel (after a CUDA error it often does not)."""
    if device.type != "cuda":
        return True
    try:
        torch.cuda.synchronize(device)
        probe = torch.ones(8, device=device)
        return bool((probe * 2).sum().item() == 16.0)
    except Exception:  # any error here means the device is gone
        return False
