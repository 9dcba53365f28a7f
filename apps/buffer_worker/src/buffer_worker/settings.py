"""The buffer worker's settings, read and checked once, before anything starts.

A bad value stops the worker at start-up with a message naming the variable, rather than
failing the first job or, worse, heartbeating under a wrong identity. Nothing here touches the
network or the GPU: the GPU's name, when ``GPU_CLASS`` is not set, is found later (``gpu.py``).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Final

import attrs

from fastwan_adapters.config import ConfigError, env_float, env_int, env_name, env_str
from fastwan_adapters.settings import CommonSettings

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_POLL_INTERVAL_S",
    "DEFAULT_SHUTDOWN_GRACE_S",
    "BufferWorkerSettings",
    "worker_version",
]

DEFAULT_HEARTBEAT_INTERVAL_S: Final = 5.0
DEFAULT_POLL_INTERVAL_S: Final = 2.0
DEFAULT_SHUTDOWN_GRACE_S: Final = 25.0
DEFAULT_STATE_DIR: Final = "./state"
DEFAULT_RETRY_INITIAL_S: Final = 1.0
DEFAULT_CALL_DEADLINE_S: Final = 15.0  # the contract's budget: 5 s to connect, 10 s to answer
_MAX_CALL_DEADLINE_S: Final = 300.0
# Below this, heartbeats would be a load test of the orchestrator rather than a liveness signal.
_MIN_HEARTBEAT_INTERVAL_S: Final = 0.05
_MAX_PORT: Final = 65535
_MAX_BACKOFF_S: Final = 30.0  # the contract's cap on any wait between retries
# The names the sibling worker's operators already set, read when ours are not (ours win).
_URL_ALIAS: Final = "BUFFER_ORCHESTRATOR_BASE_URL"
_GPU_CLASS_ALIAS: Final = "GPU_CLASS_NAME"
_POLL_ALIAS: Final = "BUFFER_POLL_INTERVAL_SEC"
# The worker id is a path segment of the heartbeat URL and a label in the orchestrator's tables.
_WORKER_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@attrs.frozen(kw_only=True)
class BufferWorkerSettings:
    """What the buffer worker reads from the environment, beside the settings both apps share.

    Attributes:
        common: ``ORCHESTRATOR_BASE_URL`` (or ``BUFFER_ORCHESTRATOR_BASE_URL``),
            ``INTERNAL_API_KEY``, model, storage and logs.
        worker_id: ``BUFFER_WORKER_ID``, else ``vast-{CONTAINER_ID}`` on Vast.ai, else
            ``VAST_CONTAINERLABEL`` as it is, else the host name: the orchestrator's key for
            this worker's heartbeats and claims.
        gpu_class: ``GPU_CLASS`` (or ``GPU_CLASS_NAME``); ``None`` means "the detected GPU's name".
        heartbeat_interval_s: ``HEARTBEAT_INTERVAL_S``: seconds between heartbeats.
        poll_interval_s: ``BUFFER_POLL_INTERVAL_S`` (or ``BUFFER_POLL_INTERVAL_SEC``): seconds
            between claims while there is no job.
        shutdown_grace_s: ``SHUTDOWN_GRACE_S``: after SIGTERM, how long the job in hand may run
            before it is stopped and reported ``worker_shutdown``.
        state_dir: ``STATE_DIR``: where terminal statuses wait until the orchestrator has them;
            must survive a restart of the worker (a volume in Docker).
        metrics_port: ``METRICS_PORT``: serve Prometheus metrics there; ``None``: not served.
        retry_initial_s: ``ORCHESTRATOR_RETRY_INITIAL_S``: the first backoff after a failed
            claim or status call (doubling up to the contract's 30 s); tests make it short.
        call_deadline_s: ``ORCHESTRATOR_CALL_DEADLINE_S``: the most one orchestrator call may
            take in all, however slowly its answer trickles in.
        restarts: ``BUFFER_WORKER_RESTARTS``, set by the image's supervisor: how many times it
            has restarted this worker (sent as ``restarts`` in heartbeats).
    """

    common: CommonSettings
    worker_id: str
    gpu_class: str | None = None
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    metrics_port: int | None = None
    retry_initial_s: float = DEFAULT_RETRY_INITIAL_S
    call_deadline_s: float = DEFAULT_CALL_DEADLINE_S
    worker_version: str = "0+unknown"
    restarts: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BufferWorkerSettings:
        """Read and check every variable the buffer worker uses.

        Raises:
            ConfigError: naming the variable whose value is wrong or missing.
        """
        common = CommonSettings.from_env(env, orchestrator_url_aliases=(_URL_ALIAS,))
        if common.orchestrator_url is None:
            raise ConfigError(
                f"ORCHESTRATOR_BASE_URL (or {_URL_ALIAS}) is required in buffer mode"
                " (the worker claims jobs from it)"
            )
        _check_capacity(env)
        poll_name = env_name(env, "BUFFER_POLL_INTERVAL_S", _POLL_ALIAS)
        return cls(
            common=common,
            worker_id=_worker_id(env),
            gpu_class=env_str(env, env_name(env, "GPU_CLASS", _GPU_CLASS_ALIAS)),
            heartbeat_interval_s=env_float(
                env, "HEARTBEAT_INTERVAL_S", DEFAULT_HEARTBEAT_INTERVAL_S, minimum=_MIN_HEARTBEAT_INTERVAL_S
            ),
            poll_interval_s=env_float(env, poll_name, DEFAULT_POLL_INTERVAL_S, minimum=0.0),
            shutdown_grace_s=env_float(env, "SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE_S, minimum=0.0),
            state_dir=Path(env_str(env, "STATE_DIR", DEFAULT_STATE_DIR) or DEFAULT_STATE_DIR).expanduser(),
            metrics_port=_metrics_port(env),
            retry_initial_s=env_float(
                env,
                "ORCHESTRATOR_RETRY_INITIAL_S",
                DEFAULT_RETRY_INITIAL_S,
                minimum=0.01,
                maximum=_MAX_BACKOFF_S,
            ),
            call_deadline_s=env_float(
                env,
                "ORCHESTRATOR_CALL_DEADLINE_S",
                DEFAULT_CALL_DEADLINE_S,
                minimum=0.1,
                maximum=_MAX_CALL_DEADLINE_S,
            ),
            worker_version=worker_version(),
            restarts=env_int(env, "BUFFER_WORKER_RESTARTS", 0, minimum=0),
        )

    @property
    def orchestrator_url(self) -> str:
        url = self.common.orchestrator_url
        if url is None:  # from_env refuses this; a hand-built settings object may not
            raise ConfigError("ORCHESTRATOR_BASE_URL is required in buffer mode")
        return url

    @property
    def api_key(self) -> str:
        key = self.common.api_key
        if key is None:
            raise ConfigError("INTERNAL_API_KEY is required when ORCHESTRATOR_BASE_URL is set")
        return key


def _worker_id(env: Mapping[str, str]) -> str:
    explicit = env_str(env, "BUFFER_WORKER_ID")
    if explicit is not None:
        name, value = "BUFFER_WORKER_ID", explicit
    elif (container := env_str(env, "CONTAINER_ID")) is not None:
        name, value = "CONTAINER_ID", f"vast-{container}"
    elif (label := env_str(env, "VAST_CONTAINERLABEL")) is not None:
        # As the sibling worker uses it (``C.12345``), so the orchestrator sees the same id.
        name, value = "VAST_CONTAINERLABEL", label
    else:
        name, value = "the host name", socket.gethostname()
    if not _WORKER_ID_RE.fullmatch(value):
        raise ConfigError(
            f"{name} must give a worker id of 1 to 128 letters, digits, '.', '_', ':' or '-' starting "
            f"with a letter or digit, got {value!r}; set BUFFER_WORKER_ID"
        )
    return value


def _check_capacity(env: Mapping[str, str]) -> None:
    """``BUFFER_CAPACITY``, the sibling's jobs-at-once setting: only 1 is possible here."""
    if env_str(env, "BUFFER_CAPACITY") is None:
        return
    capacity = env_int(env, "BUFFER_CAPACITY", 1)
    if capacity != 1:
        raise ConfigError(
            f"BUFFER_CAPACITY must be 1, got {capacity}: this worker runs one job at a time"
            " (run more containers for more at once)"
        )


def _metrics_port(env: Mapping[str, str]) -> int | None:
    if env_str(env, "METRICS_PORT") is None:
        return None
    port = env_int(env, "METRICS_PORT", 0, minimum=1)
    if port > _MAX_PORT:
        raise ConfigError(f"METRICS_PORT must be at most {_MAX_PORT}, got {port}")
    return port


def worker_version() -> str:
    """This distribution's version, sent in heartbeats, claims and ``metrics``."""
    try:
        return metadata.version("fastwan-buffer-worker")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
