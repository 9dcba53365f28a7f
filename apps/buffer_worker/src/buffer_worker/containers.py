"""The buffer worker's composition root: which adapter plays each part, and who gets what.

What both workers run (model, image loader, encoder, store, progress, the use case) is the
nested :class:`~fastwan_adapters.container.GenerationContainer`; this adds the claim loop and
what it needs (orchestrator, outbox, journal, heartbeat, board). ``main`` reads the settings and
hands them in. Nothing is built at import. The model, the image loader and the result store are
built on the first call of ``generation.usecase``, which the worker makes only after its
heartbeat has started: loading takes minutes on a real GPU and the orchestrator must see the
worker meanwhile.
"""

from __future__ import annotations

import functools

from dependency_injector import containers, providers

from buffer_worker import STARTED_AT
from buffer_worker.board import WorkerBoard
from buffer_worker.control import StopControl
from buffer_worker.gpu import detect_gpu_name
from buffer_worker.heartbeat import Heartbeater
from buffer_worker.job_run import JobRunner
from buffer_worker.leftovers import LeftoverStatuses
from buffer_worker.metrics import WorkerMetrics
from buffer_worker.progress import BoardProgressReporter
from buffer_worker.reporting import RUNNING_AFTER_END_S, StatusDelivery
from buffer_worker.settings import BufferWorkerSettings
from buffer_worker.state_dir import kept_in, usable_state_dir
from buffer_worker.worker import BufferWorker
from fastwan_adapters.container import GenerationContainer, open_orchestrator_client
from fastwan_adapters.orchestrator import Backoff, ClaimJournal, StatusOutbox
from fastwan_adapters.storage import discard_partial_output
from fastwan_core import WorkerInfo

__all__ = ["Container"]


def _gpu_class(settings: BufferWorkerSettings) -> str:
    return settings.gpu_class or detect_gpu_name()


def _backoff(settings: BufferWorkerSettings) -> Backoff:
    return Backoff(initial=settings.retry_initial_s)


class Container(containers.DeclarativeContainer):
    # -- configuration: read and checked by main() before anything starts -------------------
    settings = providers.Dependency(instance_of=BufferWorkerSettings)
    gpu_class = providers.Singleton(_gpu_class, settings)
    worker_info = providers.Singleton(
        WorkerInfo, settings.provided.worker_id, settings.provided.worker_version, gpu_class
    )

    # -- shared state -----------------------------------------------------------------------
    board = providers.Singleton(WorkerBoard)
    metrics = providers.Singleton(WorkerMetrics)
    control = providers.Singleton(StopControl, shutdown_grace_s=settings.provided.shutdown_grace_s)

    # -- the orchestrator -------------------------------------------------------------------
    client = providers.Resource(
        open_orchestrator_client,
        settings.provided.orchestrator_url,
        settings.provided.api_key,
        backoff=providers.Callable(_backoff, settings),
        deadline_s=settings.provided.call_deadline_s,
    )
    state_dir = providers.Singleton(usable_state_dir, settings.provided.state_dir)
    outbox = providers.Singleton(kept_in, StatusOutbox, state_dir)
    journal = providers.Singleton(kept_in, ClaimJournal, state_dir)
    heartbeat = providers.Singleton(
        Heartbeater,
        client,
        board,
        worker=worker_info,
        interval_s=settings.provided.heartbeat_interval_s,
        metrics=metrics,
        on_death=control.provided.side_task_died,
        restarts=settings.provided.restarts,
    )

    # -- the model and the use case: built on first use, after the heartbeat starts ------------
    generation = providers.Container(
        GenerationContainer, settings=settings.provided.common, orchestrator=client, worker=worker_info
    )
    # What the use case reports goes to the heartbeat's board first, then to the orchestrator.
    progress = providers.Singleton(BoardProgressReporter, generation.progress_sender, board)
    generation.progress.override(progress)

    # -- the claim loop and its parts ---------------------------------------------------------
    running_after_end_s = providers.Object(RUNNING_AFTER_END_S)
    backoff = providers.Callable(_backoff, settings)  # between rounds of the last run's statuses
    delivery = providers.Singleton(
        StatusDelivery,
        client=client,
        outbox=outbox,
        journal=journal,
        board=board,
        control=control,
        progress=generation.progress_sender,
        metrics=metrics,
        clock=generation.clock,
        worker=worker_info,
        running_after_end_s=running_after_end_s,
    )
    jobs = providers.Singleton(
        JobRunner,
        client=client,
        journal=journal,
        board=board,
        control=control,
        metrics=metrics,
        delivery=delivery,
        clock=generation.clock,
        worker=worker_info,
    )
    leftovers = providers.Singleton(
        LeftoverStatuses,
        journal,
        outbox,
        client,
        progress=generation.progress_sender,
        # Temp files in OUTPUT_DIR with local storage, those the dead run left (written before
        # this process started); nothing with B2 (an object appears whole).
        discard_partial_output=providers.Callable(
            functools.partial,
            discard_partial_output,
            settings.provided.common.storage,
            older_than=STARTED_AT,
        ),
        worker=worker_info,
        stop=control.provided.stop,
        backoff=backoff,
    )
    worker = providers.Singleton(
        BufferWorker,
        client=client,
        heartbeat=heartbeat,
        board=board,
        control=control,
        leftovers=leftovers,
        jobs=jobs,
        load_usecase=generation.usecase.provider,
        metrics=metrics,
        clock=generation.clock,
        worker=worker_info,
        poll_interval_s=settings.provided.poll_interval_s,
    )
