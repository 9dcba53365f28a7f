"""What the orchestrator double recorded, as a test reads it: every request in order (with the
answer it got), each job's state and claims, and a wait for what a background thread will send.
``orchestrator_state`` keeps these records and answers the requests; this is the reading side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self

import attrs

from fastwan_adapters.testing.orchestrator_faults import Endpoint, RecordedRequest
from fastwan_adapters.testing.orchestrator_leases import TERMINAL, Claim, JobSlot

__all__ = ["OrchestratorLedger"]


class OrchestratorLedger:
    """The queries of :class:`OrchestratorState`, under its lock."""

    _changed: threading.Condition
    _requests: list[RecordedRequest]
    _slots: dict[str, JobSlot]

    def requests(self, endpoint: Endpoint | None = None, *, since: int = 0) -> list[RecordedRequest]:
        """Every request recorded (of one endpoint), in order; from the ``since``-th on (of all)."""
        with self._changed:
            return [r for r in self._requests[since:] if endpoint is None or r.endpoint is endpoint]

    def claims(self) -> list[Any]:
        return [r.body for r in self.requests(Endpoint.CLAIM)]

    def heartbeats(self, worker_id: str | None = None) -> list[Any]:
        return [
            r.body for r in self.requests(Endpoint.HEARTBEAT) if worker_id is None or r.ident == worker_id
        ]

    def statuses(self, buffer_job_id: str, *, recorded_only: bool = True) -> list[Any]:
        """Status bodies for a job: those it recorded (answered 2xx), or every one received."""
        return [
            r.body
            for r in self.requests(Endpoint.STATUS)
            if r.ident == buffer_job_id and (r.answered_ok or not recorded_only)
        ]

    def terminal_statuses(self, buffer_job_id: str) -> list[Any]:
        """Recorded terminal statuses; the contract allows exactly one per claimed job."""
        return [body for body in self.statuses(buffer_job_id) if body.get("status") in TERMINAL]

    def progress(self, job_id: str) -> list[Any]:
        return [r.body for r in self.requests(Endpoint.PROGRESS) if r.ident == job_id]

    def claims_of(self, buffer_job_id: str) -> list[Claim]:
        """Every claim of the job, in order (copies: what the double knew when asked)."""
        with self._changed:
            return [attrs.evolve(claim) for claim in self._slot(buffer_job_id).claims]

    def held_by(self, worker_id: str) -> list[str]:
        """The jobs whose open claim is ``worker_id``'s (claimed or running), as the double sees it."""
        with self._changed:
            return [
                job_id
                for job_id, slot in self._slots.items()
                if (held := slot.held) is not None and held.worker_id == worker_id
            ]

    def job_ids(self) -> list[str]:
        """Every buffer job id added, in order."""
        with self._changed:
            return list(self._slots)

    def job_state(self, buffer_job_id: str) -> str:
        """``queued``, ``claimed``, or the last recorded status."""
        with self._changed:
            return self._slot(buffer_job_id).state

    def wait_for(self, condition: Callable[[Self], bool], timeout: float = 5.0) -> bool:
        """Wait until ``condition(self)`` holds (re-checked on every request); ``False`` on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(self), timeout)

    def _slot(self, buffer_job_id: str) -> JobSlot:
        try:
            return self._slots[buffer_job_id]
        except KeyError:
            raise KeyError(f"buffer_job_id {buffer_job_id!r} was never added to the double") from None
