"""What a failed generation means for the job and for the worker.

Three cases, told apart because they call for different reactions:

- out of GPU memory: the job may fit elsewhere or later (``gpu_out_of_memory``, retryable);
  the worker frees its memory and takes the next job;
- a CUDA error after which the GPU no longer runs even a trivial kernel (an illegal address,
  a device-side assert, a lost device): every later job would fail too, so the failure is
  ``fatal`` and the app restarts after reporting it; the job itself may well succeed on a
  healthy worker (a fatal failure is retryable: ``fastwan_core.errors.retry_decision``);
- anything else: ``generation_failed``.

Messages name the size and frame count, never the prompt, and never carry a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import torch

from fastwan_core.errors import ErrorCode, JobFailure
from fastwan_core.plan import GenerationPlan

__all__ = ["classify_failure", "is_cuda_error"]

_CUDA_MARKERS: Final = (
    "CUDA error",
    "CUBLAS_STATUS_",
    "CUDNN_STATUS_",
    "cuDNN error",
    "device-side assert",
    "illegal memory access",
)
_DETAIL_CHARS: Final = 200


def classify_failure(
    error: Exception, plan: GenerationPlan, profile: str, gpu_usable: Callable[[], bool]
) -> JobFailure:
    """The job failure for ``error``; ``gpu_usable`` probes the GPU (only called for CUDA errors)."""
    where = f"{plan.num_frames} frames at {plan.generated_size}"
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return JobFailure(
            ErrorCode.GPU_OUT_OF_MEMORY,
            f"the GPU ran out of memory generating {where} (memory profile {profile})",
        )
    if is_cuda_error(error):
        if not gpu_usable():
            return JobFailure(
                ErrorCode.GENERATION_FAILED,
                f"a CUDA error left the GPU unusable while generating {where}: {_detail(error)}",
                fatal=True,
            )
        return JobFailure(
            ErrorCode.GENERATION_FAILED, f"a CUDA error stopped generating {where}: {_detail(error)}"
        )
    return JobFailure(ErrorCode.GENERATION_FAILED, f"generating {where} failed: {_detail(error)}")


def is_cuda_error(error: BaseException) -> bool:
    """A CUDA runtime or library error (out-of-memory excluded: it is recoverable)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)  # torch >= 2.8 raises it for CUDA errors
    if accelerator_error is not None and isinstance(error, accelerator_error):
        return True
    return isinstance(error, RuntimeError) and any(marker in str(error) for marker in _CUDA_MARKERS)


def _detail(error: BaseException) -> str:
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else ""
    if len(first_line) > _DETAIL_CHARS:
        first_line = first_line[: _DETAIL_CHARS - 3] + "..."
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
