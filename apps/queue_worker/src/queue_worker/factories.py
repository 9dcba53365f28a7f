"""The queue worker's own adapter; those it shares with the buffer worker (model, image loader,
encoder, store, orchestrator client, progress) are in :mod:`fastwan_adapters.container`.

A generator, for a ``Resource`` provider that closes it at exit (tests override the
container's providers instead).
"""

from __future__ import annotations

from collections.abc import Iterator

from fastwan_adapters.salad import DeletionCost
from queue_worker.settings import QueueWorkerSettings

__all__ = ["open_deletion_cost"]


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
