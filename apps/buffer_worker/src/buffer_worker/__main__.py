"""``fastwan-buffer-worker`` / ``python -m buffer_worker``: read the settings, compose, run.

Exit status (:class:`fastwan_adapters.exit_code.ExitCode`, the README's table): 0 when stopped by
SIGTERM/SIGINT; 1 when the worker cannot go on (GPU unusable, heartbeat dead, an unexpected
error) or leaves a terminal status neither sent nor kept (``STATE_DIR`` full): the host should
restart it; 2 for a bad setting (a ``STATE_DIR`` that cannot be written
included) or a model that cannot be loaded (restarting will not help until the setting is fixed).
"""

# ruff: noqa: E402  (the stop signals are held before the slow imports: see below)
from __future__ import annotations

import signal

# First of all, before the imports below (about a second): a stop signal from here on is held and
# given to the worker once it runs, instead of ending the process with 143 (SIGTERM's default
# action) or a KeyboardInterrupt traceback. The console script imports this module too.
_held: list[int] = []


def _hold(signum: int, _frame: object) -> None:
    _held.append(signum)


for _signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_signum, _hold)

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

import httpx

from buffer_worker.containers import Container
from buffer_worker.settings import BufferWorkerSettings, worker_version
from buffer_worker.signals import stop_signals
from buffer_worker.worker import BufferWorker
from fastwan_adapters.config import ConfigError
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.logs import configure_logging, secrets_in

__all__ = ["main"]

log = logging.getLogger("buffer_worker")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fastwan-buffer-worker",
        description="Claims FastWan jobs from the orchestrator and runs them (buffer mode). "
        "Configured by environment variables only: see docs/vast.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {worker_version()}")
    parser.parse_args(argv)
    # Until the settings say otherwise: a bad setting must still be read, with no secret in it.
    configure_logging(secrets=secrets_in(os.environ))
    try:
        settings = BufferWorkerSettings.from_env(os.environ)
    except ConfigError as error:
        log.error("cannot start: %s", error)
        return ExitCode.CONFIG
    container = Container(settings=settings)
    common = settings.common
    configure_logging(common.log_format, common.log_level, common.secrets())
    if settings.metrics_port is not None:
        try:
            container.metrics().serve(settings.metrics_port)
        except OSError as error:
            log.error(
                "cannot start: METRICS_PORT %d cannot be served: %s", settings.metrics_port, error.strerror
            )
            return ExitCode.CONFIG
    log.info(
        "buffer worker %s (version %s) starting against %s",
        settings.worker_id,
        settings.worker_version,
        httpx.URL(settings.orchestrator_url).host,  # the host only: a URL may carry credentials
    )
    try:
        worker = container.worker()  # opens STATE_DIR
    except ConfigError as error:
        log.error("cannot start: %s", error)
        return ExitCode.CONFIG
    code = asyncio.run(_run(worker))
    log.info("exiting with status %d (%s)", code, code.name)
    if worker.runner.busy:
        # A job (or the model's load) that would not stop is still on the job thread: closing the
        # model under it could hang the exit, and so could the interpreter's end (a daemon thread
        # in a CUDA call). Whatever had to be reported was reported or is in the outbox.
        logging.shutdown()
        os._exit(int(code))
    container.shutdown_resources()
    return int(code)


async def _run(worker: BufferWorker) -> ExitCode:
    with stop_signals(worker.stop, worker.stop_now, earlier=_held):
        return await worker.run()


if __name__ == "__main__":
    sys.exit(main())
