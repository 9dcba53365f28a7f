"""The queue worker's composition root: which object gets which collaborator.

What both workers run (model, image loader, encoder, store, progress, the use case) is the
nested :class:`~fastwan_adapters.container.GenerationContainer`; this adds the worker's own
state and the services the routes call. Nothing slow happens when the container is built: the
adapters are created on first use, by the loading thread. Tests override providers
(``generation.generator``, ``generation.store``, ...) with fakes before the app starts.
"""

from __future__ import annotations

import threading

from dependency_injector import containers, providers

from fastwan_adapters.container import GenerationContainer, open_orchestrator_client
from fastwan_core import WorkerInfo
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
    # Set by the first stop signal: a start-up still under way (a retried download) ends at once.
    startup_stop = providers.Singleton(threading.Event)
    metrics = providers.Singleton(QueueMetrics)
    readiness = providers.Singleton(Readiness)
    process_exit = providers.Singleton(ProcessExit)

    # -- the use case and its adapters, built by the loading thread -----------------------
    orchestrator = providers.Resource(
        open_orchestrator_client, settings.provided.common.orchestrator_url, settings.provided.common.api_key
    )
    generation = providers.Container(
        GenerationContainer,
        settings=settings.provided.common,
        orchestrator=orchestrator,
        stop=startup_stop,
        worker=providers.Singleton(
            WorkerInfo,
            worker_id=settings.provided.worker_id,
            worker_version=settings.provided.worker_version,
            gpu_class=settings.provided.gpu_class,
        ),
    )
    deletion_cost = providers.Resource(factories.open_deletion_cost, settings)

    # -- the services the routes call -------------------------------------------------------
    loader = providers.Singleton(
        ModelLoader,
        build=generation.usecase.provider,
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
