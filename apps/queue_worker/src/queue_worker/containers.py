"""The queue worker's composition root: which object gets which collaborator.

What both workers run is the nested :class:`~fastwan_adapters.container.GenerationContainer`;
this adds the worker's own state and the services the routes call. Nothing is built at import.
"""

from __future__ import annotations

import threading

from dependency_injector import containers, providers

from fastwan_adapters.container import GenerationContainer, orchestrator_client, progress_sender_for
from fastwan_adapters.job_runner import JobRunner
from fastwan_adapters.salad import DeletionCost
from fastwan_core import WorkerInfo
from queue_worker.loader import ModelLoader
from queue_worker.metrics import QueueMetrics
from queue_worker.process import ProcessExit
from queue_worker.progress import CallerProgressReporter
from queue_worker.readiness import Readiness
from queue_worker.settings import QueueWorkerSettings
from queue_worker.slot import JobSlot


class Container(containers.DeclarativeContainer):
    wiring_config = containers.WiringConfiguration(modules=["queue_worker.routes"], auto_wire=False)
    settings = providers.Dependency(instance_of=QueueWorkerSettings)
    config = settings.provided
    common = config.common

    # -- the worker's own state -----------------------------------------------------------
    # Set by the first stop signal: a start-up still under way (a retried download) ends at once.
    startup_stop = providers.Singleton(threading.Event)
    metrics = providers.Singleton(QueueMetrics)
    readiness = providers.Singleton(Readiness)
    process_exit = providers.Singleton(ProcessExit)
    jobs = providers.Singleton(JobRunner)  # the model's load and the jobs, one at a time

    # -- the use case and its adapters, built on the job thread ---------------------------
    orchestrator = providers.Singleton(orchestrator_client, common.orchestrator_url, common.api_key)
    sender = providers.Singleton(progress_sender_for, orchestrator)
    deletion_cost = providers.Singleton(DeletionCost.on_salad, config.salad_imds_url)
    slot = providers.Singleton(
        JobSlot,
        jobs=jobs,
        readiness=readiness,
        metrics=metrics,
        process_exit=process_exit,
        fatal_exit_delay_s=config.fatal_exit_delay_s,
        deletion_cost=deletion_cost,
    )
    # What the core reports goes out only while the job's caller waits for it (progress.py).
    progress = providers.Singleton(CallerProgressReporter, sender, slot)
    worker = providers.Singleton(WorkerInfo, config.worker_id, config.worker_version, config.gpu_class)
    generation = providers.Container(
        GenerationContainer,
        settings=common,
        orchestrator=orchestrator,
        worker=worker,
        stop=startup_stop,
        progress=progress,
    )
    loader = providers.Singleton(
        ModelLoader,
        build=generation.usecase.provider,
        jobs=jobs,
        readiness=readiness,
        metrics=metrics,
        process_exit=process_exit,
        fatal_exit_delay_s=config.fatal_exit_delay_s,
        secrets=common.secrets.call(),
    )
