"""The queue worker's own choices of adapter; those shared with the buffer worker (model, image
loader, progress) are in ``fastwan_adapters.assembly``.

Plain functions the container calls (tests override the container's providers instead); the
orchestrator client is a generator, for a ``Resource`` provider that closes its pool at exit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastwan_adapters.orchestrator import OrchestratorClient
from fastwan_adapters.salad import DeletionCost
from fastwan_adapters.storage import B2ResultStore, LocalResultStore
from fastwan_core.ports import ResultStore
from queue_worker.settings import QueueWorkerSettings

__all__ = ["open_deletion_cost", "open_orchestrator_client", "open_result_store"]

log = logging.getLogger(__name__)


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


def open_orchestrator_client(settings: QueueWorkerSettings) -> Iterator[OrchestratorClient | None]:
    """One pooled client when ``ORCHESTRATOR_BASE_URL`` is set; None runs without an orchestrator."""
    url, key = settings.common.orchestrator_url, settings.common.api_key
    if url is None or key is None:
        yield None
        return
    client = OrchestratorClient(url, key)
    try:
        yield client
    finally:
        client.close()


def open_deletion_cost(settings: QueueWorkerSettings) -> Iterator[DeletionCost | None]:
    """On SaladCloud, the node's deletion cost set through IMDS while a job runs; else None."""
    if settings.salad_imds_url is None:
        yield None
        return
    cost = DeletionCost(settings.salad_imds_url)
    try:
        yield cost
    finally:
        cost.close()
