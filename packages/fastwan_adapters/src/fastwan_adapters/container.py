"""The composition both workers share: the use case and the adapter that plays each of its ports.

Each app's container nests this one (``providers.Container``), gives it what only the app knows
(its common settings, its orchestrator client or None, who the worker is, and the progress port
when it puts its own in front of the sender) and adds its own few providers around it. Nothing
slow happens when it is built: the model, the image loader and the result store are built on the
first call of ``usecase``, which each app makes on its job thread (``fastwan_adapters.job_runner``)
while its event loop answers probes or heartbeats. What works on that loop (the orchestrator
client, the progress sender) is opened and closed by the app, around its run (:func:`on_the_loop`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from dependency_injector import containers, providers

from fastwan_adapters.clock import MonotonicClock
from fastwan_adapters.encoder import build_encoder
from fastwan_adapters.images import HttpImageLoader
from fastwan_adapters.orchestrator import OrchestratorClient, OrchestratorProgressReporter, RetryPolicy
from fastwan_adapters.orchestrator.client import DEFAULT_DEADLINE_S
from fastwan_adapters.progress_log import LoggingProgressReporter
from fastwan_adapters.settings import CommonSettings
from fastwan_adapters.storage import open_result_store
from fastwan_core import GenerateVideo, WorkerInfo
from fastwan_core.ports import ProgressReporter

if TYPE_CHECKING:
    from fastwan_adapters.generator import GeneratorSettings
    from fastwan_adapters.generator.diffusers_generator import DiffusersGenerator
    from fastwan_adapters.generator.hub_retry import StopSignal

__all__ = [
    "GenerationContainer",
    "open_generator",
    "on_the_loop",
    "orchestrator_client",
    "progress_sender_for",
]

log = logging.getLogger(__name__)


# -- the model (``providers.Resource``): built on first use, closed at exit ----------------------


def open_generator(settings: GeneratorSettings, stop: StopSignal) -> Iterator[DiffusersGenerator]:
    """Load and warm up the model (minutes on a real GPU); free it at shutdown. ``stop`` set
    ends the start-up (``StartupStopped``): its download's waits at once, the rest between steps.

    torch, diffusers and transformers leave millions of long-lived objects behind; a full
    garbage collection walks them all holding the GIL (250-600 ms measured on a CPU box), which
    would stall a health check or a heartbeat. ``gc.freeze`` takes everything alive after the
    load out of the collector's sight for good.
    """
    from fastwan_adapters.generator.diffusers_generator import DiffusersGenerator  # torch: only now

    generator = DiffusersGenerator.load(settings, stop=stop)
    gc.collect()
    gc.freeze()
    try:
        yield generator
    finally:
        generator.close()


# -- what works on the app's event loop: built here, opened and closed by the app -------------


def orchestrator_client(
    url: str | None,
    api_key: str | None,
    *,
    retry: RetryPolicy | None = None,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> OrchestratorClient | None:
    """One pooled client when ``ORCHESTRATOR_BASE_URL`` is set; else None."""
    if url is None or api_key is None:
        return None
    return OrchestratorClient(url, api_key, retry=retry, deadline_s=deadline_s)


def progress_sender_for(client: OrchestratorClient | None) -> ProgressReporter:
    """Progress to the orchestrator when there is one, else to the log."""
    if client is None:
        log.info("ORCHESTRATOR_BASE_URL is not set: progress is logged only")
        return LoggingProgressReporter()
    return OrchestratorProgressReporter(client)


@contextlib.asynccontextmanager
async def on_the_loop(*parts: object) -> AsyncIterator[None]:
    """Open each of ``parts`` that works on the running loop (an async context manager: the
    orchestrator client, the progress sender) for the block, and close them after it in the
    reverse order: the progress sender's last updates go out before the client closes."""
    async with contextlib.AsyncExitStack() as stack:
        for part in parts:
            if isinstance(part, contextlib.AbstractAsyncContextManager):
                await stack.enter_async_context(part)
        yield


class GenerationContainer(containers.DeclarativeContainer):
    """What both apps run. ``progress`` is what the use case reports to: ``progress_sender``
    unless the app gives its own port, in front of it (the buffer worker's). ``stop`` ends the
    model's start-up when set (the app's stop signal; by default nothing sets it)."""

    settings = providers.Dependency(instance_of=CommonSettings)
    # An OrchestratorClient, or None: progress is logged only.
    orchestrator: providers.Dependency[OrchestratorClient | None] = providers.Dependency()
    worker = providers.Dependency(instance_of=WorkerInfo)

    # Set by the app when it must leave during the start-up (anything with is_set() and
    # wait(timeout), e.g. a threading.Event): the model's download and load end at once.
    stop: providers.Dependency[StopSignal] = providers.Dependency(
        default=providers.Singleton(threading.Event)
    )
    generator = providers.Resource(open_generator, settings.provided.generator, stop)
    images = providers.Singleton(HttpImageLoader, settings.provided.images)
    encoder = providers.Singleton(build_encoder, settings.provided.encoder)  # FASTWAN_ENCODER, NVENC probed
    store = providers.Singleton(open_result_store, settings.provided.storage)  # B2, else OUTPUT_DIR
    clock = providers.Singleton(MonotonicClock)
    progress_sender = providers.Singleton(progress_sender_for, orchestrator)
    progress: providers.Dependency[ProgressReporter] = providers.Dependency(default=progress_sender)
    usecase = providers.ThreadSafeSingleton(
        GenerateVideo,
        images=images,
        generator=generator,
        encoder=encoder,
        store=store,
        progress=progress,
        clock=clock,
        worker=worker,
    )
