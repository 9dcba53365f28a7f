"""Result stores: where finished videos go.

:class:`B2ResultStore` in production; :class:`LocalResultStore` when no B2 credentials are set
(local runs, CI, the queue worker serving its own folder). :func:`store_settings_from_env` is
the one place that decides between them, so every app makes the same choice; the settings it
returns are plain values, and :func:`open_result_store` builds the store they name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TypeAlias

from fastwan_adapters.storage.b2 import B2ResultStore, B2Settings, B2Unreachable
from fastwan_adapters.storage.local import LocalResultStore, LocalStoreSettings
from fastwan_adapters.storage.retry import UploadRetry

__all__ = [
    "B2ResultStore",
    "B2Settings",
    "B2Unreachable",
    "LocalResultStore",
    "LocalStoreSettings",
    "StoreSettings",
    "UploadRetry",
    "discard_partial_output",
    "open_result_store",
    "store_settings_from_env",
]

log = logging.getLogger(__name__)

StoreSettings: TypeAlias = B2Settings | LocalStoreSettings


def store_settings_from_env(env: Mapping[str, str], *, local_base_url: str | None = None) -> StoreSettings:
    """B2 when ``B2_KEY_ID``/``B2_APP_KEY``/``B2_BUCKET_NAME`` are set, else ``OUTPUT_DIR``.

    Args:
        local_base_url: where the local folder is served over HTTP (the queue worker), if it is.

    Raises:
        ConfigError: half the B2 variables set.
    """
    return B2Settings.from_env(env) or LocalStoreSettings.from_env(env, base_url=local_base_url)


def open_result_store(settings: StoreSettings) -> B2ResultStore | LocalResultStore:
    """The store ``settings`` name: B2 with its credentials checked now, or ``OUTPUT_DIR`` created.

    Raises:
        ConfigError: credentials or bucket rejected, an ``OUTPUT_DIR`` that cannot be written.
        B2Unreachable: B2 could not be reached to check the credentials.
    """
    if isinstance(settings, B2Settings):
        return B2ResultStore.connect(settings)
    served = f" and served at {settings.base_url}/" if settings.base_url else ""
    log.info("no B2 variables: videos are written to OUTPUT_DIR %s%s", settings.directory, served)
    return LocalResultStore.open(settings)


def discard_partial_output(settings: StoreSettings, name: str, *, older_than: float | None = None) -> None:
    """Remove what a write of ``name`` killed mid-way left: temporary files in ``OUTPUT_DIR``
    (last written before ``older_than``, when given); nothing with B2, where an object appears
    only once its upload is complete."""
    if isinstance(settings, LocalStoreSettings):
        LocalResultStore(settings.directory).discard_partial(name, older_than=older_than)
