"""The orchestrator adapter: the HTTP client, the progress reporter and the status outbox.

- :class:`OrchestratorClient`: claim, heartbeat, status and progress, each with the contract's
  retry rule.
- :class:`OrchestratorProgressReporter`: the core's ``ProgressReporter`` port, best effort,
  sent by a task of the worker's event loop.
- :class:`RetryPolicy`: the one retry rule (backoff, jitter, cap, cut short by a stop).
- :class:`StatusOutbox`: terminal statuses kept on disk until the orchestrator has them.
- :class:`ClaimJournal`: the job in hand, on disk, so that a worker killed mid-job still ends it.
"""

from __future__ import annotations

from fastwan_adapters.orchestrator.client import API_KEY_HEADER, DEFAULT_TIMEOUT, OrchestratorClient
from fastwan_adapters.orchestrator.errors import (
    DeliveryInterrupted,
    OrchestratorAuthError,
    OrchestratorError,
    OrchestratorRejected,
    OrchestratorUnavailable,
    RequestNotBuilt,
)
from fastwan_adapters.orchestrator.journal import ClaimJournal, ClaimRecord
from fastwan_adapters.orchestrator.messages import (
    Heartbeat,
    HeartbeatAnswer,
    StatusOutcome,
    WorkerStatus,
    running_status_body,
    status_body,
)
from fastwan_adapters.orchestrator.outbox import PendingStatus, StatusOutbox
from fastwan_adapters.orchestrator.progress import OrchestratorProgressReporter
from fastwan_adapters.orchestrator.retry import RetryPolicy, Sleep

__all__ = [
    "API_KEY_HEADER",
    "DEFAULT_TIMEOUT",
    "ClaimJournal",
    "ClaimRecord",
    "DeliveryInterrupted",
    "Heartbeat",
    "HeartbeatAnswer",
    "OrchestratorAuthError",
    "OrchestratorClient",
    "OrchestratorError",
    "OrchestratorProgressReporter",
    "OrchestratorRejected",
    "OrchestratorUnavailable",
    "PendingStatus",
    "RequestNotBuilt",
    "RetryPolicy",
    "Sleep",
    "StatusOutbox",
    "StatusOutcome",
    "WorkerStatus",
    "running_status_body",
    "status_body",
]
