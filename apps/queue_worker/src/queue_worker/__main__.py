"""``fastwan-queue-worker`` / ``python -m queue_worker``: check the environment, then serve.

Exit status (:class:`fastwan_adapters.exit_code.ExitCode`, the README's table): 0 after a
graceful stop (SIGTERM/SIGINT); 1 when a job left the GPU unusable or the start-up failed for a
reason that passes (the Hub or B2 unreachable); 2 for a wrong variable, or a model or store that
cannot be had as configured.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from fastwan_adapters.config import ConfigError
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.logs import configure_logging, secrets_in
from queue_worker.app import create_app
from queue_worker.containers import Container
from queue_worker.server import build_server
from queue_worker.settings import QueueWorkerSettings

log = logging.getLogger("queue_worker")


def main() -> None:
    # Until the settings say otherwise: errors stay readable, and secrets are scrubbed already.
    configure_logging("console", "INFO", secrets_in(os.environ))
    try:
        settings = QueueWorkerSettings.from_env(os.environ)
        configure_logging(settings.common.log_format, settings.common.log_level, settings.common.secrets())
        container = Container(settings=settings)
        app = create_app(container)
        server = build_server(app, container)
    except ConfigError as error:
        log.error("configuration error: %s", error)
        sys.exit(ExitCode.CONFIG)
    log.info(
        "queue worker %s (%s) listening on %s:%d",
        settings.worker_version,
        settings.worker_id,
        settings.host,
        settings.port,
    )
    with _signals_end_quietly():
        server.run()
    process_exit = container.process_exit()
    log.info(
        "stopped: exit code %d%s",
        process_exit.code,
        f" ({process_exit.reason})" if process_exit.reason else "",
    )
    sys.exit(process_exit.code)


@contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """Let a stop signal end the process through ``main``'s exit code, not its default action.

    uvicorn handles SIGTERM/SIGINT while it runs, and afterwards raises the signal again
    against the handlers it found at start; with these in place that lands here, harmlessly,
    instead of killing the process (143) or raising KeyboardInterrupt after a clean drain.
    """
    quiet = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    main()
