"""Structured logs for both apps: JSON or console lines, the job id on every line, no secret.

structlog renders, and the standard library's loggers (the core's, uvicorn's, httpx's,
diffusers') are routed through the same processors, so one ``LOG_FORMAT`` governs every line.
The job id travels in a context variable (``bind_job``), which the event loop's tasks inherit
and ``fastwan_adapters.job_runner`` carries into the job thread.

No secret in any line: tracebacks are rendered plain, without the values of local variables
(rich's, structlog's console default, showed B2's application key, the orchestrator's
headers and the whole environment), and every known secret value is replaced in the finished
line, whatever put it there: a message, a nested value, a traceback, an uncaught exception.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Final

import structlog

__all__ = ["SECRET_VARIABLES", "bind_job", "configure_logging", "secrets_in"]

#: The variables whose values no log line may show (the B2 key id too: half a credential; the
#: Hugging Face token that fetches a gated model).
SECRET_VARIABLES: Final = ("INTERNAL_API_KEY", "B2_APP_KEY", "B2_KEY_ID", "HF_TOKEN")
_REDACTED: Final = "***"
#: Libraries that write their log lines through a stderr handler of their own.
_OWN_HANDLER_LIBRARIES: Final = ("transformers", "diffusers")
# Shorter values would blank out ordinary words and numbers all over the logs.
_MIN_SECRET_LENGTH: Final = 4


def secrets_in(env: Mapping[str, str]) -> list[str]:
    """The values of :data:`SECRET_VARIABLES` set in ``env`` (surrounding blanks dropped)."""
    return [value.strip() for name in SECRET_VARIABLES if (value := env.get(name) or "").strip()]


def _written_forms(secret: str) -> set[str]:
    """``secret`` as a line may hold it: as is, and as JSON, ``repr`` (of the text or of its
    bytes, as in h11's errors) or both escape it, a quote, a backslash or a non-ASCII letter."""
    as_json, as_repr = json.dumps(secret)[1:-1], repr(secret)[1:-1]
    return {secret, as_json, as_repr, json.dumps(as_repr)[1:-1], repr(secret.encode())[2:-1]}


class _SecretScrubber:
    """Replaces every known secret in a finished line, in every form it may be written in
    there. Its repr never shows them."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= _MIN_SECRET_LENGTH:
                forms |= _written_forms(secret)
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, _REDACTED)
        return text

    def __repr__(self) -> str:
        return f"<secret scrubber: {len(self._forms)} forms>"


class _ScrubbingFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, with the secrets taken out of the line it has finished."""

    def __init__(self, *args: Any, scrub: _SecretScrubber, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(super().format(record))


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
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = _ScrubbingFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        scrub=_SecretScrubber(secrets),
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
    for name in _OWN_HANDLER_LIBRARIES:
        _route_through_root(name)
    logging.captureWarnings(True)  # warnings.warn (torch's, diffusers') as log lines too
    sys.excepthook = _log_uncaught


class _RoutedLibraryLogger(logging.Logger):
    """The root logger of a library that would add its own stderr handler and stop propagating:
    it keeps no handler of its own and always propagates, so the root's formatter writes its lines."""

    def addHandler(self, hdlr: logging.Handler) -> None:
        return None

    @property
    def propagate(self) -> bool:
        return True

    @propagate.setter
    def propagate(self, _value: bool) -> None:
        return None


def _route_through_root(name: str) -> None:
    """Make ``name``'s root logger a :class:`_RoutedLibraryLogger`: transformers and diffusers
    each add a stderr handler of their own (lines such as ``[transformers] ...``, raw in a JSON
    log) when first imported, which is after this runs; if one was imported first, its handlers
    go now (it adds them once)."""
    existing = logging.Logger.manager.loggerDict.get(name)
    if isinstance(existing, logging.Logger):
        existing.handlers[:] = []
        existing.propagate = True
        return
    default = logging.getLoggerClass()
    logging.setLoggerClass(_RoutedLibraryLogger)
    try:
        logging.getLogger(name)
    finally:
        logging.setLoggerClass(default)


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    """An exception nothing caught ends the process as one more line of the log, so that it is
    in ``LOG_FORMAT`` and scrubbed like the others (Python would print it raw)."""
    logging.getLogger("fastwan").critical("uncaught exception", exc_info=(kind, error, trace))


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
