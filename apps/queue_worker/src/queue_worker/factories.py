"""Which adapter the queue worker uses for each port, decided from its settings.

Each factory is a plain function (the container calls them; tests override the container's
providers instead). Those that hold something to close are generators, for the container's
``Resource`` providers: the model's memory, the orchestrator's connection pool and its progress
sender, whose last (terminal) updates must go out before the process ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastwan_adapters.generator import GeneratorSettings
from fastwan_adapters.images import HttpImageLoader, ImageLoaderSettings
from fastwan_adapters.orchestrator import OrchestratorClient, OrchestratorProgressReporter
from fastwan_adapters.progress_log import LoggingProgressReporter
from fastwan_adapters.storage import B2ResultStore, LocalResultStore
from fastwan_core.ports import ImageLoader, ProgressReporter, ResultStore, VideoGenerator
from queue_worker.settings import QueueWorkerSettings

__all__ = ["open_generator", "open_image_loader", "open_progress_reporter", "open_result_store"]

log = logging.getLogger(__name__)


def open_generator(settings: GeneratorSettings) -> Iterator[VideoGenerator]:
    """Load and warm up the model (slow); free it at shutdown."""
    # Imported here: torch and diffusers take seconds to import, and the server must listen first.
    from fastwan_adapters.generator import DiffusersGenerator

    generator = DiffusersGenerator.load(settings)
    try:
        yield generator
    finally:
        generator.close()


def open_image_loader(settings: ImageLoaderSettings) -> Iterator[ImageLoader]:
    """The first-frame fetcher, with its connection pool closed at shutdown."""
    loader = HttpImageLoader(settings)
    try:
        yield loader
    finally:
        loader.close()


def open_result_store(settings: QueueWorkerSettings) -> ResultStore:
    """B2 when its variables are set (credentials checked now), else ``OUTPUT_DIR`` served by this app."""
    storage = settings.storage
    if isinstance(storage, LocalResultStore):
        log.info(
            "no B2 variables: videos are written to OUTPUT_DIR %s and served at %s/",
            storage.directory,
            settings.outputs_url,
        )
        return storage
    return B2ResultStore.connect(storage)


def open_progress_reporter(settings: QueueWorkerSettings) -> Iterator[ProgressReporter]:
    """Progress to the orchestrator when ``ORCHESTRATOR_BASE_URL`` is set, else to the log."""
    url, key = settings.common.orchestrator_url, settings.common.api_key
    if url is None or key is None:
        log.info("ORCHESTRATOR_BASE_URL is not set: progress is logged only")
        yield LoggingProgressReporter()
        return
    client = OrchestratorClient(url, key)
    reporter = OrchestratorProgressReporter(client)
    try:
        yield reporter
    finally:
        reporter.close()
        client.close()
