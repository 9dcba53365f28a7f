"""Finding the model's files: the tiny model, a local folder, or the Hugging Face cache.

A first start downloads about 24 GB. Progress goes to the log (a line every
``_LOG_EVERY_S`` seconds) rather than to terminal progress bars, which a container's log
collector shows as one endless line. Only the folders the pipelines use are fetched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from tqdm import tqdm

from fastwan_adapters.generator.errors import ModelUnavailableError
from fastwan_adapters.generator.settings import TINY_SPARSE_MODEL, GeneratorSettings

__all__ = ["COMPONENT_FOLDERS", "LoggingProgress", "hub_errors", "resolve_model_folder"]

log = logging.getLogger(__name__)

#: The checkpoint's folders the generator loads; anything else in the repository is skipped.
COMPONENT_FOLDERS: Final = ("transformer", "text_encoder", "tokenizer", "vae")
_ALLOW_PATTERNS: Final = ["model_index.json", *(f"{folder}/*" for folder in COMPONENT_FOLDERS)]
_LOG_EVERY_S: Final = 10.0


def resolve_model_folder(settings: GeneratorSettings) -> Path:
    """The folder holding the model in diffusers layout, downloading it if allowed.

    Raises:
        ModelUnavailableError: offline and not cached, not on the Hub, or the download failed.
    """
    if settings.is_tiny:
        from fastwan_adapters.generator.tiny import ensure_tiny_model

        return ensure_tiny_model(settings.tiny_folder, sparse=settings.model == TINY_SPARSE_MODEL)
    if (folder := settings.local_folder) is not None:
        return folder
    return _download(settings)


def _download(settings: GeneratorSettings) -> Path:
    import huggingface_hub
    from huggingface_hub import constants

    repo = settings.model
    cache = settings.hub_cache_dir or Path(constants.HF_HUB_CACHE)
    offline = settings.offline or constants.HF_HUB_OFFLINE
    log.info(
        "model %s: looking in the Hugging Face cache at %s%s", repo, cache, " (offline)" if offline else ""
    )
    started = time.monotonic()
    with hub_errors("FASTWAN_MODEL", repo, cache, offline=offline):
        folder = huggingface_hub.snapshot_download(
            repo,
            cache_dir=cache,
            local_files_only=offline,
            allow_patterns=_ALLOW_PATTERNS,
            tqdm_class=LoggingProgress,
        )
    log.info("model %s: files ready in %s (%.1f s)", repo, folder, time.monotonic() - started)
    return Path(str(folder))


@contextmanager
def hub_errors(variable: str, name: str, cache: Path, *, offline: bool) -> Iterator[None]:
    """A Hugging Face download's failures as one start-up error naming ``variable`` and the cache."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        yield
    except LocalEntryNotFoundError:
        reason = "downloads are off (HF_HUB_OFFLINE=1)" if offline else "the Hub could not be reached"
        raise ModelUnavailableError(
            f"{variable}={name!r} is not in the Hugging Face cache at {cache} and {reason}: download it "
            "once with network access, or set HF_HOME to a cache that holds it"
        ) from None
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise ModelUnavailableError(
            f"{variable}={name!r} was not found on the Hugging Face Hub (no such repository or file, or "
            "it is gated and no token gives access to it)"
        ) from None
    except (OSError, ValueError) as error:  # HTTP and disk errors (HfHubHTTPError is an OSError)
        raise ModelUnavailableError(
            f"{variable}={name!r} could not be downloaded to {cache}: {type(error).__name__}"
        ) from None


class LoggingProgress(tqdm):  # type: ignore[type-arg]
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
        shown = super().update(n)
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
