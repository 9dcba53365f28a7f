"""The settings and factories every app shares: one place that says which adapter runs when.

Each app's container calls these; the rules live here once: B2 when its variables are set,
else local disk (:func:`fastwan_adapters.storage.result_store_from_env`); orchestrator progress
when ``ORCHESTRATOR_BASE_URL`` is set, else logs only.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from fastwan_adapters.config import ConfigError, env_choice, env_str
from fastwan_adapters.generator import GeneratorSettings
from fastwan_adapters.images import ImageLoaderSettings
from fastwan_adapters.storage import result_store_from_env

__all__ = ["CommonSettings", "build_result_store"]

#: B2 when its variables are set, else ``OUTPUT_DIR`` on local disk.
build_result_store = result_store_from_env


@attrs.frozen(kw_only=True)
class CommonSettings:
    """What both workers and the CLI read from the environment.

    Attributes:
        orchestrator_url: ``ORCHESTRATOR_BASE_URL``; None runs without an orchestrator.
        api_key: ``INTERNAL_API_KEY``; required with an orchestrator, never logged.
        b2_app_key: only so that logs can scrub it; the store reads its own settings.
    """

    generator: GeneratorSettings
    images: ImageLoaderSettings
    b2_app_key: str | None = attrs.field(repr=False)
    orchestrator_url: str | None
    api_key: str | None = attrs.field(repr=False)
    log_format: str
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CommonSettings:
        orchestrator_url = env_str(env, "ORCHESTRATOR_BASE_URL")
        if orchestrator_url is not None and not orchestrator_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"ORCHESTRATOR_BASE_URL must start with http:// or https://, got {orchestrator_url!r}"
            )
        api_key = env_str(env, "INTERNAL_API_KEY")
        if orchestrator_url is not None and api_key is None:
            raise ConfigError("INTERNAL_API_KEY is required when ORCHESTRATOR_BASE_URL is set")
        return cls(
            generator=GeneratorSettings.from_env(env),
            images=ImageLoaderSettings.from_env(env),
            b2_app_key=env_str(env, "B2_APP_KEY"),
            orchestrator_url=orchestrator_url.rstrip("/") if orchestrator_url else None,
            api_key=api_key,
            log_format=env_choice(env, "LOG_FORMAT", {"json", "console"}, "console") or "console",
            log_level=env_choice(env, "LOG_LEVEL", {"debug", "info", "warning", "error"}, "info") or "info",
        )

    def secrets(self) -> list[str]:
        """Values no log line may contain."""
        return [secret for secret in (self.api_key, self.b2_app_key) if secret]
