"""The buffer worker's composition root: which adapter plays each part, and who gets what.

What both workers run is the nested :class:`~fastwan_adapters.container.GenerationContainer`.
``main`` hands the settings in. Nothing is built at import; the model when the worker loads it.
"""

from __future__ import annotations

import threading

from dependency_injector import containers, providers

from buffer_worker.gpu import worker_info
from buffer_worker.metrics import WorkerMetrics
from buffer_worker.reporting import StatusDelivery
from buffer_worker.settings import BufferWorkerSettings
from buffer_worker.state_dir import kept_in, usable_state_dir
from buffer_worker.worker import BufferWorker, JobProgress
from fastwan_adapters.container import GenerationContainer
from fastwan_adapters.orchestrator import ClaimJournal, OrchestratorClient, RetryPolicy, StatusOutbox
from fastwan_adapters.orchestrator import OrchestratorProgressReporter as Sender


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=BufferWorkerSettings)
    config = settings.provided
    worker_info = providers.Singleton(worker_info, settings)  # GPU_CLASS, else the GPU's name
    metrics = providers.Singleton(WorkerMetrics)

    # -- the orchestrator, and what outlives a crash in STATE_DIR --------------------------------
    retry = providers.Singleton(RetryPolicy, initial=config.retry_initial_s)
    client = providers.Singleton(
        OrchestratorClient,
        config.orchestrator_url,
        config.api_key,
        retry=retry,
        deadline_s=config.call_deadline_s,
    )
    state_dir = providers.Singleton(usable_state_dir, config.state_dir)
    outbox = providers.Singleton(kept_in, StatusOutbox, state_dir)
    journal = providers.Singleton(kept_in, ClaimJournal, state_dir)

    # Set when the worker leaves: a start-up under way (a retried download, the load) ends.
    startup_stop = providers.Singleton(threading.Event)

    # -- the use case, which reports to the worker first, then to the orchestrator ---------------
    sender = providers.Singleton(Sender, client)
    progress = providers.Singleton(JobProgress, sender)
    generation = providers.Container(
        GenerationContainer,
        settings=config.common,
        orchestrator=client,
        worker=worker_info,
        stop=startup_stop,
        progress=progress,
    )

    # -- the worker -----------------------------------------------------------------------------
    delivery = providers.Singleton(
        StatusDelivery, client, outbox, journal, sender, metrics, worker_info, config.common.storage
    )
    worker = providers.Singleton(
        BufferWorker,
        settings=settings,
        client=client,
        delivery=delivery,
        progress=progress,
        load_usecase=generation.usecase.provider,  # on the job thread, once the heartbeat runs
        metrics=metrics,
        worker=worker_info,
        startup_stop=startup_stop,
    )
