"""Which buffer workers the container runs: one per GPU, or as many as ``BUFFER_WORKERS`` says.

With one worker its environment is the container's, untouched, so a single-GPU deployment keeps
its worker id and its outbox. With several, worker ``i`` sees only its GPU
(``CUDA_VISIBLE_DEVICES``) and gets its own id (``{BUFFER_WORKER_ID}-gpu{i}``), its own
``STATE_DIR/gpu{i}`` (an outbox and a claim journal belong to one process) and, if metrics are
served, its own ``METRICS_PORT + i``.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping, Sequence
from typing import Final

import attrs

from fastwan_adapters.config import ConfigError

__all__ = ["NVIDIA_SMI_TIMEOUT_S", "GpuListUnreadable", "WorkerPlan", "list_gpus", "plan_workers"]

log = logging.getLogger(__name__)

#: A driver in trouble can leave nvidia-smi hanging; a healthy one answers in well under a second.
NVIDIA_SMI_TIMEOUT_S: Final = 10.0
_MAX_PORT: Final = 65535
_DEFAULT_STATE_DIR: Final = "./state"  # the worker's own default (settings.DEFAULT_STATE_DIR)


class GpuListUnreadable(Exception):
    """``nvidia-smi`` is installed but did not say which GPUs there are (see :func:`list_gpus`)."""


@attrs.frozen
class WorkerPlan:
    """One worker to supervise.

    Attributes:
        name: how the supervisor's log names it (``worker`` alone, else ``gpu{i}``).
        env: its whole environment.
        gpu: the ``CUDA_VISIBLE_DEVICES`` entry it was given, ``None`` when it was left alone.
    """

    name: str
    env: Mapping[str, str] = attrs.field(repr=False)
    gpu: str | None = None


def list_gpus(env: Mapping[str, str], *, timeout_s: float = NVIDIA_SMI_TIMEOUT_S) -> list[str] | None:
    """The GPUs the container may use: ``CUDA_VISIBLE_DEVICES``' entries when it is set,
    else the indices ``nvidia-smi`` lists; ``None`` when there is no ``nvidia-smi`` (a machine
    without GPUs: one worker).

    Raises:
        GpuListUnreadable: ``nvidia-smi`` is there but fails, hangs past ``timeout_s`` or lists
            something else than indices: a driver in trouble, which a restart may clear. Running
            one worker instead would idle every other GPU for the life of the container.
    """
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        return [entry.strip() for entry in visible.split(",") if entry.strip()]
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],  # noqa: S607 found on PATH
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
            env=dict(env),
        )
    except FileNotFoundError:
        log.info("no nvidia-smi: one worker")
        return None
    except subprocess.TimeoutExpired:
        raise GpuListUnreadable(f"nvidia-smi did not list the GPUs within {timeout_s:g} s") from None
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or error.stdout or "").strip()[:200]
        raise GpuListUnreadable(f"nvidia-smi failed with status {error.returncode}: {detail!r}") from None
    except OSError as error:
        raise GpuListUnreadable(f"nvidia-smi could not be run: {error}") from None
    indices = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    if not indices or not all(index.isdigit() for index in indices):
        raise GpuListUnreadable(f"nvidia-smi listed the GPUs as {listed.stdout[:200]!r}, not as indices")
    return indices


def worker_count(env: Mapping[str, str], gpus: Sequence[str] | None) -> int:
    """``BUFFER_WORKERS``: ``auto`` (the default) is one per GPU, at least one.

    Raises:
        ConfigError: not ``auto`` nor a positive integer, or more workers than GPUs.
    """
    raw = (env.get("BUFFER_WORKERS") or "auto").strip().lower()
    if raw == "auto":
        return max(1, len(gpus or ()))
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"BUFFER_WORKERS must be 'auto' or a positive integer, got {raw!r}")
    seen = len(gpus or ())
    if count > 1 and count > seen:
        raise ConfigError(
            f"BUFFER_WORKERS={count} needs as many GPUs, but the container sees {seen} "
            "(nvidia-smi or CUDA_VISIBLE_DEVICES); one worker per GPU at most"
        )
    return count


def plan_workers(env: Mapping[str, str], gpus: Sequence[str] | None) -> list[WorkerPlan]:
    """One plan per worker; see the module's docstring.

    Raises:
        ConfigError: a bad ``BUFFER_WORKERS``, or a worker id that cannot carry the suffix.
    """
    count = worker_count(env, gpus)
    if count == 1:
        return [WorkerPlan("worker", dict(env))]
    assert gpus is not None  # worker_count allows several workers only with that many GPUs
    # Imported here: a single worker never needs it, and it pulls in the storage adapters.
    from buffer_worker.settings import _worker_id

    base_id = _worker_id(env)
    state_dir = (env.get("STATE_DIR") or "").strip() or _DEFAULT_STATE_DIR
    metrics_port = _port(env)
    if metrics_port is not None and metrics_port + count - 1 > _MAX_PORT:
        # Each worker's own check would name a port nobody set (METRICS_PORT + i).
        raise ConfigError(
            f"METRICS_PORT={metrics_port} with {count} workers needs ports {metrics_port} to "
            f"{metrics_port + count - 1} (one per GPU); it must be at most {_MAX_PORT - count + 1}"
        )
    plans = []
    for index in range(count):
        worker_env = {
            **env,
            "CUDA_VISIBLE_DEVICES": gpus[index],
            "BUFFER_WORKER_ID": f"{base_id}-gpu{index}",
            "STATE_DIR": f"{state_dir.rstrip('/')}/gpu{index}",
        }
        if metrics_port is not None:
            worker_env["METRICS_PORT"] = str(metrics_port + index)
        plans.append(WorkerPlan(f"gpu{index}", worker_env, gpus[index]))
    return plans


def _port(env: Mapping[str, str]) -> int | None:
    raw = (env.get("METRICS_PORT") or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"METRICS_PORT must be an integer, got {raw!r}") from None
