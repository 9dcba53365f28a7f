"""The buffer worker's composition root: which adapter plays each part, and who gets what.

Nothing is built at import. The model, the image loader and the result store are built on
the first call of ``usecase``, which the worker makes only after its heartbeat has started:
loading takes minutes on a real GPU and the orchestrator must see the worker meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dependency_injector import containers, providers

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
from buffer_worker.worker import BufferWorker
from fastwan_adapters import assembly
from fastwan_adapters.assembly import build_result_store
from fastwan_adapters.clock import MonotonicClock
from fastwan_adapters.config import ConfigError
from fastwan_adapters.durable import check_writable_folder
from fastwan_adapters.orchestrator import (
    Backoff,
    ClaimJournal,
    OrchestratorClient,
    StatusOutbox,
)
from fastwan_adapters.storage import LocalResultStore
from fastwan_core import GenerateVideo, WorkerInfo

if TYPE_CHECKING:
    pass

__all__ = ["Container"]

_Kept = TypeVar("_Kept", StatusOutbox, ClaimJournal)


def _gpu_class(settings: BufferWorkerSettings) -> str:
    return settings.gpu_class or detect_gpu_name()


def _client(settings: BufferWorkerSettings) -> Iterator[OrchestratorClient]:
    client = OrchestratorClient(
        settings.orchestrator_url,
        settings.api_key,
        backoff=_backoff(settings),
        deadline_s=settings.call_deadline_s,
    )
    try:
        yield client
    finally:
        client.close()


def _state_dir(settings: BufferWorkerSettings) -> Path:
    """``STATE_DIR``, checked by writing to it: one that cannot hold the outbox is a setting to
    fix (exit 2), not a crash to restart into."""
    try:
        check_writable_folder(settings.state_dir)
    except OSError as error:
        raise ConfigError(_unusable(settings.state_dir, error)) from None
    return settings.state_dir


def _kept_in(kind: type[_Kept], state_dir: Path) -> _Kept:
    """The outbox or the claim journal in ``state_dir``; a failure to open it names STATE_DIR."""
    try:
        return kind(state_dir)
    except OSError as error:
        raise ConfigError(_unusable(state_dir, error)) from None


def _unusable(state_dir: Path, error: OSError) -> str:
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(state_dir) else ""
    return (
        f"STATE_DIR {str(state_dir)!r} is not usable: {error.strerror or type(error).__name__}{where}; "
        "set STATE_DIR to a writable folder (a volume in Docker)"
    )


def _backoff(settings: BufferWorkerSettings) -> Backoff:
    return Backoff(initial=settings.retry_initial_s)


def _discard_partial_output(env: Mapping[str, str]) -> Callable[[str], None]:
    """What a killed job left half-written: temp files in ``OUTPUT_DIR`` with local storage;
    nothing with B2, where an object appears only once its upload is complete."""

    def discard(name: str) -> None:
        if any(env.get(key) for key in ("B2_KEY_ID", "B2_APP_KEY", "B2_BUCKET_NAME")):
            return
        try:
            store = LocalResultStore.from_env(env)
        except ConfigError:
            return  # the store's own start-up check reports it
        store.discard_partial(name)

    return discard


class Container(containers.DeclarativeContainer):
    # -- configuration ----------------------------------------------------------------------
    env = providers.Object(os.environ)
    settings = providers.Singleton(BufferWorkerSettings.from_env, env)
    gpu_class = providers.Singleton(_gpu_class, settings)
    worker_info = providers.Singleton(
        WorkerInfo, settings.provided.worker_id, settings.provided.worker_version, gpu_class
    )

    # -- shared state -----------------------------------------------------------------------
    clock = providers.Singleton(MonotonicClock)
    board = providers.Singleton(WorkerBoard)
    metrics = providers.Singleton(WorkerMetrics)
    control = providers.Singleton(StopControl, shutdown_grace_s=settings.provided.shutdown_grace_s)

    # -- the orchestrator -------------------------------------------------------------------
    client = providers.Resource(_client, settings)
    state_dir = providers.Singleton(_state_dir, settings)
    outbox = providers.Singleton(_kept_in, StatusOutbox, state_dir)
    journal = providers.Singleton(_kept_in, ClaimJournal, state_dir)
    progress_sender = providers.Resource(assembly.open_progress_reporter, client)
    progress = providers.Singleton(BoardProgressReporter, progress_sender, board)
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
    generator = providers.Resource(assembly.open_generator, settings.provided.common.generator)
    images = providers.Resource(assembly.open_image_loader, settings.provided.common.images)
    encoder = providers.Singleton(
        assembly.build_encoder, settings.provided.common.encoder
    )  # FASTWAN_ENCODER, NVENC probed
    store = providers.Singleton(build_result_store, env)  # B2 when configured, else OUTPUT_DIR
    usecase = providers.Singleton(
        GenerateVideo, images, generator, encoder, store, progress, clock, worker_info
    )

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
        progress=progress_sender,
        metrics=metrics,
        clock=clock,
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
        clock=clock,
        worker=worker_info,
    )
    leftovers = providers.Singleton(
        LeftoverStatuses,
        journal,
        outbox,
        client,
        progress=progress_sender,
        discard_partial_output=providers.Callable(_discard_partial_output, env),
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
        load_usecase=usecase.provider,
        metrics=metrics,
        clock=clock,
        worker=worker_info,
        poll_interval_s=settings.provided.poll_interval_s,
    )
