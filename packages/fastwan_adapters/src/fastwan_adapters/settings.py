"""What both workers read from the environment: model, encoder, images, storage, orchestrator, logs.

Read once, in each app's ``main``, and handed to the containers as plain values: nothing here
touches the network, the GPU or the disk (B2's credentials, the model and ``OUTPUT_DIR`` are
checked when the adapters are built, see :mod:`fastwan_adapters.container`).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from fastwan_adapters.config import ConfigError, env_choice, env_name, env_str
from fastwan_adapters.encoder import EncoderSettings
from fastwan_adapters.generator import GeneratorSettings
from fastwan_adapters.images import ImageLoaderSettings
from fastwan_adapters.logs import secrets_in
from fastwan_adapters.storage import StoreSettings, store_settings_from_env

__all__ = ["CommonSettings"]


@attrs.frozen(kw_only=True)
class CommonSettings:
    """What both workers read from the environment, beside their own settings.

    Attributes:
        storage: B2 when its variables are set, else ``OUTPUT_DIR``
            (:func:`fastwan_adapters.storage.store_settings_from_env`).
        orchestrator_url: ``ORCHESTRATOR_BASE_URL``; None runs without an orchestrator.
        api_key: ``INTERNAL_API_KEY``; required with an orchestrator, never logged.
        secret_values: the values of :data:`~fastwan_adapters.logs.SECRET_VARIABLES` set (the API
            key, B2's key and key id, the Hub token), only so that logs can scrub them.
    """

    generator: GeneratorSettings
    encoder: EncoderSettings
    images: ImageLoaderSettings
    storage: StoreSettings
    secret_values: tuple[str, ...] = attrs.field(repr=False)
    orchestrator_url: str | None
    api_key: str | None = attrs.field(repr=False)
    log_format: str
    log_level: str

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        orchestrator_url_aliases: tuple[str, ...] = (),
        local_base_url: str | None = None,
    ) -> CommonSettings:
        """Read the shared variables.

        Args:
            orchestrator_url_aliases: other names ``ORCHESTRATOR_BASE_URL`` may be set under
                (buffer mode's ``BUFFER_ORCHESTRATOR_BASE_URL``); the documented name wins.
            local_base_url: where ``OUTPUT_DIR`` is served over HTTP (queue mode), if it is.
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
            storage=store_settings_from_env(env, local_base_url=local_base_url),
            secret_values=tuple(secrets_in(env)),
            orchestrator_url=orchestrator_url.rstrip("/") if orchestrator_url else None,
            api_key=api_key,
            log_format=env_choice(env, "LOG_FORMAT", {"json", "console"}, "console") or "console",
            log_level=env_choice(env, "LOG_LEVEL", {"debug", "info", "warning", "error"}, "info") or "info",
        )

    def secrets(self) -> list[str]:
        """Values no log line may contain."""
        return list(self.secret_values)
