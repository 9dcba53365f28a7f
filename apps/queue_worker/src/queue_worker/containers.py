"""The queue worker's composition root: which object gets which collaborator.

Nothing slow happens when the container is built: the adapters (model, store, orchestrator)
are created on first use, by the loading thread. Tests override providers (``generator``,
``store``, ``progress``, ...) with fakes before the app starts.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from fastwan_adapters import assembly
from fastwan_adapters.clock import MonotonicClock
from fastwan_core import GenerateVideo, WorkerInfo
from queue_worker import factories
from queue_worker.loader import ModelLoader
from queue_worker.metrics import QueueMetrics
from queue_worker.process import ProcessExit
from queue_worker.readiness import Readiness
from queue_worker.runner import JobRunner
from queue_worker.settings import QueueWorkerSettings


class Container(containers.DeclarativeContainer):
    wiring_config = containers.WiringConfiguration(modules=["queue_worker.routes"], auto_wire=False)

    # -- configuration: read and checked by main() before anything starts -----------------
    settings = providers.Dependency(instance_of=QueueWorkerSettings)

    # -- the worker's own state -----------------------------------------------------------
    metrics = providers.Singleton(QueueMetrics)
    readiness = providers.Singleton(Readiness)
    process_exit = providers.Singleton(ProcessExit)

    # -- adapters, built by the loading thread --------------------------------------------
    generator = providers.Resource(assembly.open_generator, settings.provided.common.generator)
    images = providers.Resource(assembly.open_image_loader, settings.provided.common.images)
    encoder = providers.Singleton(
        assembly.build_encoder, settings.provided.common.encoder
    )  # FASTWAN_ENCODER, NVENC probed
    store = providers.Singleton(factories.open_result_store, settings)
    orchestrator = providers.Resource(factories.open_orchestrator_client, settings)
    progress = providers.Resource(assembly.open_progress_reporter, orchestrator)
    clock = providers.Singleton(MonotonicClock)
    deletion_cost = providers.Resource(factories.open_deletion_cost, settings)

    # -- the use case and the services the routes call ------------------------------------
    generate_video = providers.ThreadSafeSingleton(
        GenerateVideo,
        images=images,
        generator=generator,
        encoder=encoder,
        store=store,
        progress=progress,
        clock=clock,
        worker=providers.Singleton(
            WorkerInfo,
            worker_id=settings.provided.worker_id,
            worker_version=settings.provided.worker_version,
            gpu_class=settings.provided.gpu_class,
        ),
    )
    loader = providers.Singleton(
        ModelLoader,
        build=generate_video.provider,
        readiness=readiness,
        metrics=metrics,
        process_exit=process_exit,
        fatal_exit_delay_s=settings.provided.fatal_exit_delay_s,
        secrets=settings.provided.common.secrets.call(),
    )
    runner = providers.Singleton(
        JobRunner,
        deletion_cost=deletion_cost,
        readiness=readiness,
        metrics=metrics,
        process_exit=process_exit,
        fatal_exit_delay_s=settings.provided.fatal_exit_delay_s,
    )
