"""Structured logs for both apps: JSON or console lines, the job id on every line, no secret.

structlog renders, and the standard library's loggers (the core's, uvicorn's, httpx's,
diffusers') are routed through the same processors, so one ``LOG_FORMAT`` governs every line.
The job id travels in a context variable (``bind_job``), which ``asyncio.to_thread`` and
``contextvars.copy_context`` carry into the generation thread. Known secret values are scrubbed
from every line as a last line of defence.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

__all__ = ["bind_job", "configure_logging"]

_REDACTED = "***"


class _SecretScrubber:
    """Replaces every occurrence of a known secret in the rendered event's strings."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if self.secrets:
            for key, value in event.items():
                if isinstance(value, str):
                    event[key] = self._scrub(value)
        return event

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, _REDACTED)
        return text


def configure_logging(fmt: str = "console", level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Configure structlog and the standard library once, at start-up.

    Args:
        fmt: ``json`` (one object a line, for log shippers) or ``console``.
        secrets: values that must never appear in a log line (API keys).
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if fmt == "json" else structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    scrubber = _SecretScrubber(secrets)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            scrubber,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "urllib3", "b2sdk"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


@contextmanager
def bind_job(job_id: str | None, **extra: Any) -> Iterator[None]:
    """Put ``job_id`` (and those of ``extra`` that are set) on every log line inside the block."""
    tokens = structlog.contextvars.bind_contextvars(
        job_id=job_id, **{key: value for key, value in extra.items() if value is not None}
    )
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
