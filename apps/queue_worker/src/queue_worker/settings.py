"""The queue worker's settings, read and checked once, before the server starts.

Everything that can be wrong with the environment is found here, with a message that names
the variable; nothing here touches the network or the GPU (B2 credentials and the model are
checked by the background start-up, which reports through ``/ready``). ``OUTPUT_DIR`` is
created here, though: this app serves it under ``/outputs`` from the first second.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from importlib import metadata
from typing import Final

import attrs

from fastwan_adapters.config import ConfigError, env_float, env_int, env_name, env_str
from fastwan_adapters.salad import DEFAULT_IMDS_URL
from fastwan_adapters.settings import CommonSettings
from fastwan_adapters.storage import LocalStoreSettings

__all__ = ["DEFAULT_PORT", "QueueWorkerSettings"]

DEFAULT_PORT: Final = 8000
DEFAULT_SHUTDOWN_GRACE_S: Final = 25.0
DEFAULT_FATAL_EXIT_DELAY_S: Final = 5.0
#: Salad's binary posts from the same machine: a whole 32 MiB body takes well under a second.
DEFAULT_BODY_TIMEOUT_S: Final = 30.0
_MAX_PORT: Final = 65535


@attrs.frozen(kw_only=True)
class QueueWorkerSettings:
    """What the queue worker reads from the environment, beside the settings both apps share.

    Attributes:
        host, port: ``HOST`` (default ``0.0.0.0``) and ``PORT`` (default 8000): where uvicorn
            listens; Salad's job-queue binary posts to ``localhost:8000``.
        shutdown_grace_s: ``SHUTDOWN_GRACE_S``: after SIGTERM, how long the job in hand may run
            before it is stopped at its next step and answered ``worker_shutdown``.
        fatal_exit_delay_s: ``FATAL_EXIT_DELAY_S``: how long a worker that cannot go on (model
            load failed, GPU unusable) keeps answering ``/health`` and ``/ready`` with the reason
            before it exits non-zero, so that probes and operators can read why.
        body_timeout_s: ``BODY_TIMEOUT_S``: how long the whole body of ``POST /generate`` may
            take to arrive once its job holds the slot; a sender that stalls is answered 408
            and the slot freed.
        public_base_url: ``PUBLIC_BASE_URL``: how clients reach this server; with local storage,
            output URLs are ``{public_base_url}/outputs/{job}.mp4``.
        common: what both workers read; its ``storage`` is B2 when ``B2_KEY_ID``,
            ``B2_APP_KEY`` and ``B2_BUCKET_NAME`` are set (the credentials are checked by the
            background start-up), else ``OUTPUT_DIR`` (created now), served under ``/outputs``.
        worker_id: ``WORKER_ID``, else ``salad-{SALAD_MACHINE_ID}``, else the host name.
        salad_imds_url: on SaladCloud (``SALAD_MACHINE_ID`` set), ``SALAD_IMDS_URL`` or Salad's
            own IMDS address: where the node's deletion cost is set while a job runs.
        gpu_class: ``GPU_CLASS`` (or ``GPU_CLASS_NAME``, the sibling's name for it), sent as
            ``metrics.gpu_class``; ``None``: the GPU's name.
    """

    common: CommonSettings
    host: str = "0.0.0.0"  # noqa: S104 - a container's server must listen on every interface
    port: int = DEFAULT_PORT
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    fatal_exit_delay_s: float = DEFAULT_FATAL_EXIT_DELAY_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    public_base_url: str
    worker_id: str
    worker_version: str
    salad_imds_url: str | None = None
    gpu_class: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QueueWorkerSettings:
        """Read and check every variable the queue worker uses.

        Raises:
            ConfigError: naming the variable whose value is wrong.
        """
        port = env_int(env, "PORT", DEFAULT_PORT, minimum=1)
        if port > _MAX_PORT:
            raise ConfigError(f"PORT must be at most {_MAX_PORT}, got {port}")
        public_base_url = env_str(env, "PUBLIC_BASE_URL", f"http://localhost:{port}") or ""
        if not public_base_url.startswith(("http://", "https://")):
            raise ConfigError(f"PUBLIC_BASE_URL must start with http:// or https://, got {public_base_url!r}")
        common = CommonSettings.from_env(env, local_base_url=_outputs_url(public_base_url))
        if isinstance(common.storage, LocalStoreSettings):
            common.storage.create_directory()  # served from the first second: a bad path is exit 2
        return cls(
            common=common,
            host=env_str(env, "HOST", "0.0.0.0") or "0.0.0.0",  # noqa: S104 - see the attribute
            port=port,
            shutdown_grace_s=env_float(env, "SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE_S, minimum=0.0),
            fatal_exit_delay_s=env_float(env, "FATAL_EXIT_DELAY_S", DEFAULT_FATAL_EXIT_DELAY_S, minimum=0.0),
            body_timeout_s=_body_timeout_s(env),
            public_base_url=public_base_url.rstrip("/"),
            worker_id=_worker_id(env),
            worker_version=_version(),
            salad_imds_url=_salad_imds_url(env),
            gpu_class=env_str(env, env_name(env, "GPU_CLASS", "GPU_CLASS_NAME")),
        )

    @property
    def local_store(self) -> LocalStoreSettings | None:
        """``OUTPUT_DIR`` when there is no B2, the embedded default: the folder this app serves."""
        storage = self.common.storage
        return storage if isinstance(storage, LocalStoreSettings) else None


def _outputs_url(public_base_url: str) -> str:
    return f"{public_base_url.rstrip('/')}/outputs"


def _body_timeout_s(env: Mapping[str, str]) -> float:
    value = env_float(env, "BODY_TIMEOUT_S", DEFAULT_BODY_TIMEOUT_S)
    if value <= 0:
        raise ConfigError(f"BODY_TIMEOUT_S must be a number of seconds above 0, got {value}")
    return value


def _worker_id(env: Mapping[str, str]) -> str:
    explicit = env_str(env, "WORKER_ID")
    if explicit is not None:
        return explicit
    machine = env_str(env, "SALAD_MACHINE_ID")
    if machine is not None:
        return f"salad-{machine}"
    return socket.gethostname()


def _salad_imds_url(env: Mapping[str, str]) -> str | None:
    if env_str(env, "SALAD_MACHINE_ID") is None:
        return None
    url = env_str(env, "SALAD_IMDS_URL", DEFAULT_IMDS_URL) or DEFAULT_IMDS_URL
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"SALAD_IMDS_URL must start with http:// or https://, got {url!r}")
    return url


def _version() -> str:
    try:
        return metadata.version("fastwan-queue-worker")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
