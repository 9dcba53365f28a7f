"""``fastwan-buffer-supervisor`` / ``python -m buffer_worker.fleet``: buffer workers, kept running.

Every argument is passed to each ``fastwan-buffer-worker``. Exit status: the first non-zero
status a worker ended with, else 0; 2 (``ExitCode.CONFIG``) for a bad setting (the supervisor's
or a worker's).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Final

from buffer_worker.fleet.backoff import DEFAULT_INITIAL_S, MAX_S, RestartBackoff
from buffer_worker.fleet.keeper import Keeper
from buffer_worker.fleet.plan import GpuListUnreadable, list_gpus, plan_workers
from fastwan_adapters.config import ConfigError, env_float, env_int
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.logs import configure_logging, secrets_in

__all__ = ["main"]

log = logging.getLogger("buffer_worker.fleet")

WORKER_PROGRAM: Final = "fastwan-buffer-worker"
_DEFAULT_GRACE_S: Final = 25.0
_STOP_MARGIN_S: Final = 10  # as the entrypoint's STOP_TIMEOUT_S default: grace + 10


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    fmt = "json" if (env.get("LOG_FORMAT") or "").strip().lower() == "json" else "console"
    level = (env.get("LOG_LEVEL") or "info").strip().upper()
    level = level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO"
    configure_logging(fmt, level, secrets_in(env))  # the workers' secrets are in its environment too
    try:
        initial = env_float(env, "BUFFER_RESTART_BACKOFF_S", DEFAULT_INITIAL_S, minimum=0.001)
        if initial > MAX_S:
            raise ConfigError(f"BUFFER_RESTART_BACKOFF_S must be at most {MAX_S:g}, got {initial:g}")
        stop_timeout_s = _stop_timeout(env)
        plans = plan_workers(env, list_gpus(env))
    except ConfigError as error:
        log.error("cannot start: %s", error)
        return ExitCode.CONFIG
    except GpuListUnreadable as error:
        log.error("cannot start: %s; set CUDA_VISIBLE_DEVICES to name the GPUs, or restart", error)
        return ExitCode.RESTART
    if len(plans) > 1:
        log.info("%d GPUs: one buffer worker on each", len(plans))
    keeper = Keeper(
        plans,
        [WORKER_PROGRAM, *(sys.argv[1:] if argv is None else argv)],
        backoff=lambda: RestartBackoff(initial),
        stop_timeout_s=stop_timeout_s,
    )
    status = keeper.run()
    log.info("every worker has ended; exiting with status %d", status)
    return status


def _stop_timeout(env: Mapping[str, str]) -> float:
    """``STOP_TIMEOUT_S``, else ``SHUTDOWN_GRACE_S`` rounded up + 10, as in the entrypoint."""
    if (env.get("STOP_TIMEOUT_S") or "").strip():
        return float(env_int(env, "STOP_TIMEOUT_S", 0, minimum=0))
    grace = env_float(env, "SHUTDOWN_GRACE_S", _DEFAULT_GRACE_S, minimum=0.0)
    return float(math.ceil(grace) + _STOP_MARGIN_S)


if __name__ == "__main__":
    sys.exit(main())
