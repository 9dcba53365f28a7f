"""The settings and factories every app shares: one place that says which adapter runs when.

Each app's container calls these; the rules live here once: B2 when its variables are set,
else local disk (:func:`fastwan_adapters.storage.result_store_from_env`); orchestrator progress
when ``ORCHESTRATOR_BASE_URL`` is set, else logs only.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import attrs

from fastwan_adapters.config import ConfigError, env_choice, env_name, env_str
from fastwan_adapters.encoder import EncoderSettings, build_encoder
from fastwan_adapters.generator import GeneratorSettings
from fastwan_adapters.images import HttpImageLoader, ImageLoaderSettings
from fastwan_adapters.logs import secrets_in
from fastwan_adapters.orchestrator import OrchestratorClient, OrchestratorProgressReporter
from fastwan_adapters.progress_log import LoggingProgressReporter
from fastwan_adapters.storage import result_store_from_env
from fastwan_core.ports import ProgressReporter

if TYPE_CHECKING:
    from fastwan_adapters.generator.diffusers_generator import DiffusersGenerator

__all__ = [
    "CommonSettings",
    "build_encoder",
    "build_result_store",
    "open_generator",
    "open_image_loader",
    "open_progress_reporter",
]

log = logging.getLogger(__name__)

#: B2 when its variables are set, else ``OUTPUT_DIR`` on local disk.
build_result_store = result_store_from_env


@attrs.frozen(kw_only=True)
class CommonSettings:
    """What both workers and the CLI read from the environment.

    Attributes:
        orchestrator_url: ``ORCHESTRATOR_BASE_URL``; None runs without an orchestrator.
        api_key: ``INTERNAL_API_KEY``; required with an orchestrator, never logged.
        secret_values: the values of :data:`~fastwan_adapters.logs.SECRET_VARIABLES` set (the API key,
            B2's key), only so that logs can scrub them; the store reads its own settings.
    """

    generator: GeneratorSettings
    encoder: EncoderSettings
    images: ImageLoaderSettings
    secret_values: tuple[str, ...] = attrs.field(repr=False)
    orchestrator_url: str | None
    api_key: str | None = attrs.field(repr=False)
    log_format: str
    log_level: str

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, orchestrator_url_aliases: tuple[str, ...] = ()
    ) -> CommonSettings:
        """Read the shared variables.

        Args:
            orchestrator_url_aliases: other names ``ORCHESTRATOR_BASE_URL`` may be set under
                (buffer mode's ``BUFFER_ORCHESTRATOR_BASE_URL``); the documented name wins.
        """
        url_name = env_name(env, "ORCHESTRATOR_BASE_URL", *orchestrator_url_aliases)
        orchestrator_url = env_str(env, url_name)
        if orchestrator_url is not None and not orchestrator_url.startswith(("http://", "https://")):
            raise ConfigError(f"{url_name} must start with http:// or https://, got {orchestrator_url!r}")
        api_key = env_str(env, "INTERNAL_API_KEY")
        if orchestrator_url is not None and api_key is None:
            raise ConfigError(f"INTERNAL_API_KEY is required when {url_name} is set")
        return cls(
            generator=GeneratorSettings.from_env(env),
            encoder=EncoderSettings.from_env(env),
            images=ImageLoaderSettings.from_env(env),
            secret_values=tuple(secrets_in(env)),
            orchestrator_url=orchestrator_url.rstrip("/") if orchestrator_url else None,
            api_key=api_key,
            log_format=env_choice(env, "LOG_FORMAT", {"json", "console"}, "console") or "console",
            log_level=env_choice(env, "LOG_LEVEL", {"debug", "info", "warning", "error"}, "info") or "info",
        )

    def secrets(self) -> list[str]:
        """Values no log line may contain."""
        return list(self.secret_values)


# -- resources for the apps' containers (``providers.Resource``): built on first use, closed at exit --


def open_generator(settings: GeneratorSettings) -> Iterator[DiffusersGenerator]:
    """Load and warm up the model (minutes on a real GPU); free it at shutdown.

    torch, diffusers and transformers leave millions of long-lived objects behind; a full
    garbage collection walks them all holding the GIL (250-600 ms measured on a CPU box), which
    would stall a health check or a heartbeat. ``gc.freeze`` takes everything alive after the
    load out of the collector's sight for good.
    """
    from fastwan_adapters.generator.diffusers_generator import DiffusersGenerator  # torch: only now

    generator = DiffusersGenerator.load(settings)
    gc.collect()
    gc.freeze()
    try:
        yield generator
    finally:
        generator.close()


def open_image_loader(settings: ImageLoaderSettings) -> Iterator[HttpImageLoader]:
    """The first-frame fetcher, its connection pool closed at shutdown."""
    loader = HttpImageLoader(settings)
    try:
        yield loader
    finally:
        loader.close()


def open_progress_reporter(client: OrchestratorClient | None) -> Iterator[ProgressReporter]:
    """Progress to the orchestrator when there is one, else to the log; the last updates of
    the last job go out before the process ends."""
    if client is None:
        log.info("ORCHESTRATOR_BASE_URL is not set: progress is logged only")
        yield LoggingProgressReporter()
        return
    reporter = OrchestratorProgressReporter(client)
    try:
        yield reporter
    finally:
        reporter.close(timeout=5.0)
