"""The GPU's name, for ``GPU_CLASS`` when the operator did not set it.

Asked before the model loads, because heartbeats start first and every one carries it.
"""

from __future__ import annotations

import logging

from buffer_worker.settings import BufferWorkerSettings
from fastwan_core import WorkerInfo

__all__ = ["detect_gpu_name", "worker_info"]

log = logging.getLogger(__name__)


def detect_gpu_name() -> str:
    """CUDA device 0's name (``"NVIDIA H100 80GB HBM3"``), or ``"cpu"`` without a usable GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception as error:  # a broken driver is the model loader's to report, with details
        log.warning("could not read the GPU's name (%s); GPU_CLASS will be 'cpu'", type(error).__name__)
    return "cpu"


def worker_info(settings: BufferWorkerSettings) -> WorkerInfo:
    """Who claims and heartbeats: ``GPU_CLASS``, else the GPU's name."""
    return WorkerInfo(settings.worker_id, settings.worker_version, settings.gpu_class or detect_gpu_name())
