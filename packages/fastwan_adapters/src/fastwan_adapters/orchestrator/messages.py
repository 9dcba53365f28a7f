"""The bodies the worker sends to the orchestrator and the answers it reads back.

Sent bodies keep today's fields always (the orchestrator that exists reads them) and add the
contract's new fields only when they hold something. Answers are read leniently: unknown
fields are ignored and a missing or malformed optional field reads as its empty value, so an
orchestrator newer or older than this worker never breaks it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs

from fastwan_core import JobResult, JobState, Phase, result_to_wire

__all__ = [
    "Heartbeat",
    "HeartbeatAnswer",
    "StatusOutcome",
    "WorkerStatus",
    "running_status_body",
    "status_body",
]


class WorkerStatus(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"


def _fraction(_instance: object, _attribute: object, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"Heartbeat.progress must be between 0 and 1, got {value!r}")


@attrs.frozen(kw_only=True)
class Heartbeat:
    """One heartbeat's body.

    Attributes:
        error: the worker's last error, a human-readable line (never a secret), or ``None``.
        current_job_id, phase, progress: the job in hand, while one runs.
        restarts: how many times the image's supervisor has restarted this worker.
    """

    status: WorkerStatus
    gpu_class: str
    capacity: int = 1
    error: str | None = None
    current_job_id: str | None = None
    phase: Phase | None = None
    progress: float | None = attrs.field(default=None, validator=_fraction)
    worker_version: str | None = None
    restarts: int | None = None

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status.value,
            "gpu_class": self.gpu_class,
            "capacity": self.capacity,
            "error": self.error,
        }
        new = {
            "current_job_id": self.current_job_id,
            "phase": self.phase.value if self.phase is not None else None,
            "progress": self.progress,
            "worker_version": self.worker_version,
            "restarts": self.restarts,
        }
        body.update({key: value for key, value in new.items() if value is not None})
        return body


@attrs.frozen
class HeartbeatAnswer:
    """What a heartbeat's answer asks of the worker.

    Attributes:
        cancel_job_ids: jobs to stop. The contract does not say which of a job's ids it holds,
            so :meth:`cancels` is asked with every id of the job in hand.
    """

    cancel_job_ids: frozenset[str] = frozenset()

    def cancels(self, *job_ids: str | None) -> bool:
        """Whether any of ``job_ids`` (``None`` ignored) is to be cancelled."""
        return any(job_id is not None and job_id in self.cancel_job_ids for job_id in job_ids)

    @classmethod
    def from_wire(cls, payload: object) -> HeartbeatAnswer:
        """Read an answer leniently: only ``cancel_job_ids``, and only its string items, count."""
        if not isinstance(payload, dict):
            return cls()
        raw = payload.get("cancel_job_ids")
        if not isinstance(raw, list):
            return cls()
        return cls(frozenset(_strings(raw)))


def _strings(items: Iterable[object]) -> Iterable[str]:
    return (item for item in items if isinstance(item, str) and item)


class StatusOutcome(enum.Enum):
    """How a status call ended.

    ``RECORDED``: a 2xx. ``GONE``: a 404 or 409, the job is no longer this worker's: stop work on
    it, never send it again. ``REJECTED``: another 4xx, the orchestrator refuses this body and
    would refuse it again (kept aside on disk by the outbox, for an operator).
    """

    RECORDED = "recorded"
    GONE = "gone"
    REJECTED = "rejected"


def status_body(result: JobResult, worker_id: str | None = None) -> dict[str, Any]:
    """The terminal status body for ``result``: the core's wire form plus ``worker_id``."""
    body = result_to_wire(result)
    if worker_id is not None:
        body["worker_id"] = worker_id
    return body


def running_status_body(worker_id: str | None = None) -> dict[str, Any]:
    """The body of the one ``running`` status sent when work starts."""
    body: dict[str, Any] = {"status": JobState.RUNNING.value}
    if worker_id is not None:
        body["worker_id"] = worker_id
    return body
