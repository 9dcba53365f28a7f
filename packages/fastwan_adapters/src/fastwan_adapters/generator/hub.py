"""Finding the model's files: the tiny model, a local folder, or the Hugging Face cache.

A first start downloads about 24 GB. Progress goes to the log (a line every
``_LOG_EVERY_S`` seconds) rather than to terminal progress bars, which a container's log
collector shows as one endless line. Only the folders the pipelines use are fetched. A
download that fails for a passing reason is retried for a while (``hub_retry``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Final

from tqdm import tqdm

from fastwan_adapters.generator.hub_retry import NEVER_STOPPED, StopSignal, download_with_retry
from fastwan_adapters.generator.settings import TINY_SPARSE_MODEL, GeneratorSettings

__all__ = ["COMPONENT_FOLDERS", "LoggingProgress", "resolve_model_folder"]

log = logging.getLogger(__name__)

#: The checkpoint's folders the generator loads; anything else in the repository is skipped.
COMPONENT_FOLDERS: Final = ("transformer", "text_encoder", "tokenizer", "vae")
_ALLOW_PATTERNS: Final = ["model_index.json", *(f"{folder}/*" for folder in COMPONENT_FOLDERS)]
_LOG_EVERY_S: Final = 10.0


def resolve_model_folder(settings: GeneratorSettings, *, stop: StopSignal = NEVER_STOPPED) -> Path:
    """The folder holding the model in diffusers layout, downloading it if allowed.

    ``stop`` set ends the download's waits (see ``hub_retry``).

    Raises:
        ModelUnavailableError: offline and not cached, not on the Hub, the disk full: a failure
            that retrying cannot change.
        ModelDownloadFailed: the Hub could not be reached, or kept failing (HTTP 5xx, 429), for
            ``settings.download_retry`` (see ``hub_retry``).
        StartupStopped: ``stop`` was set during the download.
    """
    if settings.is_tiny:
        from fastwan_adapters.generator.tiny import ensure_tiny_model

        return ensure_tiny_model(settings.tiny_folder, sparse=settings.model == TINY_SPARSE_MODEL)
    if (folder := settings.local_folder) is not None:
        return folder
    return _download(settings, stop)


def _download(settings: GeneratorSettings, stop: StopSignal) -> Path:
    import huggingface_hub
    from huggingface_hub import constants

    repo = settings.model
    cache = settings.hub_cache_dir or Path(constants.HF_HUB_CACHE)
    offline = settings.offline or constants.HF_HUB_OFFLINE
    log.info(
        "model %s: looking in the Hugging Face cache at %s%s", repo, cache, " (offline)" if offline else ""
    )
    started = time.monotonic()
    folder = download_with_retry(
        lambda headers: huggingface_hub.snapshot_download(
            repo,
            cache_dir=cache,
            local_files_only=offline,
            allow_patterns=_ALLOW_PATTERNS,
            tqdm_class=LoggingProgress,
            endpoint=settings.hub_endpoint,
            headers=dict(headers),
        ),
        variable="FASTWAN_MODEL",
        name=repo,
        cache=cache,
        offline=offline,
        retry=settings.download_retry,
        stop=stop,
    )
    log.info("model %s: files ready in %s (%.1f s)", repo, folder, time.monotonic() - started)
    return Path(str(folder))


class LoggingProgress(tqdm):
    """A tqdm that writes nothing to the terminal and logs its progress every few seconds.

    huggingface_hub hands vanilla tqdm subclasses plain tqdm arguments; the byte counters it
    aggregates across files arrive here as ``update`` calls.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["file"] = _NullWriter()
        kwargs.pop("name", None)
        super().__init__(*args, **kwargs)
        self._last_log = time.monotonic()

    def update(self, n: float | None = 1) -> bool | None:
        shown: bool | None = super().update(n)
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            log.info("download: %s", self._describe())
        return shown

    def close(self) -> None:
        if not self.disable and self.n:
            log.info("download: %s (done)", self._describe())
        super().close()

    def _describe(self) -> str:
        desc = self.desc.rstrip(": ") or "progress"
        if self.unit == "B":
            done = f"{self.n / 1e9:.2f} GB"
            total = f" of {self.total / 1e9:.2f} GB" if self.total else ""
        else:
            done, total = f"{self.n:g}", f" of {self.total:g}" if self.total else ""
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        return f"{desc}: {done}{total}{share}"


class _NullWriter:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        return None
