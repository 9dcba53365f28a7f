"""Result stores: where finished videos go.

:class:`B2ResultStore` in production; :class:`LocalResultStore` when no B2 credentials are set
(local runs, CI, the queue worker serving its own folder). :func:`result_store_from_env` is
the one place that decides between them, so every app makes the same choice.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastwan_adapters.storage.b2 import B2ResultStore, B2Settings, B2Unreachable, UploadRetry
from fastwan_adapters.storage.local import LocalResultStore

__all__ = [
    "B2ResultStore",
    "B2Settings",
    "B2Unreachable",
    "LocalResultStore",
    "UploadRetry",
    "result_store_from_env",
]


def result_store_from_env(
    env: Mapping[str, str], *, local_base_url: str | None = None
) -> B2ResultStore | LocalResultStore:
    """B2 when ``B2_KEY_ID``/``B2_APP_KEY``/``B2_BUCKET_NAME`` are set, else ``OUTPUT_DIR``.

    Raises:
        ConfigError: half the B2 variables set, credentials rejected, bad ``OUTPUT_DIR``.
        B2Unreachable: B2 could not be reached to check the credentials.
    """
    settings = B2Settings.from_env(env)
    if settings is not None:
        return B2ResultStore.connect(settings)
    return LocalResultStore.from_env(env, base_url=local_base_url)
