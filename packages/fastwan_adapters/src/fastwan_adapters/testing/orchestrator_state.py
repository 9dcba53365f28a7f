"""What the orchestrator double knows and how it answers, apart from HTTP: the tests' side.

The jobs it hands out and the state and claims of each, the faults and refusals armed, the
cancels its heartbeat answers name, and every request it has recorded: what a test arranges,
under one lock that ``wait_for`` waits on (what it queries is ``orchestrator_ledger``). The
contract's answer to each request (the key check, a claim, a status: 404 for a job it does not
know, 409 for one that is not this worker's or already ended) is decided here too, and so are
the lease rules when they are on (``orchestrator_leases``); ``orchestrator_double`` serves it
over HTTP.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from fastwan_adapters.testing.orchestrator_faults import Endpoint, Fault, RecordedRequest, Refusal
from fastwan_adapters.testing.orchestrator_leases import (
    LEASE_EXPIRED,
    STATUSES,
    TAKEN_BACK,
    TERMINAL,
    JobSlot,
    LeaseRules,
)
from fastwan_adapters.testing.orchestrator_ledger import OrchestratorLedger

__all__ = ["DEFAULT_API_KEY", "OrchestratorState"]

DEFAULT_API_KEY: Final = "test-internal-key"


@attrs.define
class _Armed:
    fault: Fault
    remaining: int


class OrchestratorState(OrchestratorLedger):
    """The double's jobs, faults and records (see :class:`OrchestratorDouble` for the arguments)."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        terminal_conflict: bool = True,
        lease: LeaseRules | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_key = api_key
        self.terminal_conflict = terminal_conflict
        self.lease = lease
        self._clock = clock
        self._changed = threading.Condition(threading.RLock())
        self._requests: list[RecordedRequest] = []
        self._slots: dict[str, JobSlot] = {}
        self._queue: deque[str] = deque()
        self._faults: dict[Endpoint, deque[_Armed]] = {endpoint: deque() for endpoint in Endpoint}
        self._cancels: set[str] = set()
        self._refusals: list[Refusal] = []
        self._next_id = 0

    # -- arranging ------------------------------------------------------------------------

    def add_job(self, job: Mapping[str, Any], *, buffer_job_id: str | None = None) -> str:
        """Queue a job for claims (handed out first in, first out); returns its buffer job id.

        The job is handed out as given (it may be invalid, on purpose) with ``buffer_job_id``
        set: the one passed, the job's own, or a new ``b-0001``-style id.
        """
        with self._changed:
            if buffer_job_id is None:
                buffer_job_id = job.get("buffer_job_id") or self._new_id()
            if buffer_job_id in self._slots:
                raise ValueError(f"buffer_job_id {buffer_job_id!r} is already in the double's queue")
            self._slots[buffer_job_id] = JobSlot({**job, "buffer_job_id": buffer_job_id})
            self._queue.append(buffer_job_id)
            self._changed.notify_all()
        return buffer_job_id

    def hand_out_again(self, buffer_job_id: str) -> None:
        """Queue a job again as it was, open, for the next claim: an orchestrator that lost
        the job's status, or retries it under the same id."""
        with self._changed:
            self._requeue(self._slot(buffer_job_id), None)

    def take_back(self, buffer_job_id: str) -> bool:
        """Queue a claimed job again now, as if its lease had run out: its holder's status
        calls are answered 409 from now on. ``False`` if the job is not held by a worker."""
        with self._changed:
            slot = self._slot(buffer_job_id)
            if slot.held is None:
                return False
            self._requeue(slot, TAKEN_BACK)
            return True

    def take_away(self, buffer_job_id: str, status: int = 409) -> None:
        """From now on, status calls for this job get ``status`` (404 or 409): it is no longer
        the worker's (reassigned, expired, deleted)."""
        with self._changed:
            self._slot(buffer_job_id).gone_status = status

    def cancel(self, *job_ids: str) -> None:
        """Name these ids in ``cancel_job_ids`` of every heartbeat answer until cleared."""
        with self._changed:
            self._cancels.update(job_ids)

    def clear_cancels(self) -> None:
        with self._changed:
            self._cancels.clear()

    def fail_next(self, endpoint: Endpoint, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` calls of ``endpoint`` (faults queue up in order)."""
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._changed:
            self._faults[endpoint].append(_Armed(fault, times))

    def refuse(self, code: int = 500, *, buffer_job_id: str | None = None, status: str | None = None) -> None:
        """Answer ``code`` to every status call of ``buffer_job_id`` and/or carrying ``status``
        (e.g. ``"running"``) until :meth:`clear_refusals`; other status calls go through."""
        if buffer_job_id is None and status is None:
            raise ValueError("refuse needs a buffer_job_id, a status or both (fail_next refuses all)")
        with self._changed:
            self._refusals.append(Refusal(code, buffer_job_id, status))

    def clear_refusals(self) -> None:
        with self._changed:
            self._refusals.clear()

    def clear_faults(self, endpoint: Endpoint | None = None) -> None:
        """Forget the faults still armed (for one endpoint, or all)."""
        with self._changed:
            for armed in self._faults.values() if endpoint is None else [self._faults[endpoint]]:
                armed.clear()

    def expire_leases(self) -> list[str]:
        """Apply the lease rules now (the double also does before answering each request);
        returns the jobs that went back to the queue."""
        with self._changed:
            return self._expire()

    # -- answering ------------------------------------------------------------------------

    def _respond(self, request: RecordedRequest, readable: bool) -> tuple[int, Any]:
        self._expire()
        refusal = self._refusal(request, readable)
        if refusal is not None:
            return refusal
        if request.endpoint is Endpoint.CLAIM:
            return self._claim(request.body)
        if request.endpoint is Endpoint.HEARTBEAT:
            self._renew(request.ident, request.body.get("current_job_id"))
            answer: dict[str, Any] = {"detail": "ok"}
            if self._cancels:
                answer["cancel_job_ids"] = sorted(self._cancels)
            return 200, answer
        if request.endpoint is Endpoint.STATUS:
            return self._status(request.ident or "", request.body)
        return 200, {"detail": "ok"}

    def _refusal(self, request: RecordedRequest, readable: bool) -> tuple[int, Any] | None:
        if request.endpoint is None:
            return 404, {"detail": "Not Found"}
        if request.method != "POST":
            return 405, {"detail": "Method Not Allowed"}
        given = request.headers.get("x-internal-api-key", "").encode()
        if not hmac.compare_digest(given, self.api_key.encode()):
            return 401, {"detail": "Invalid internal API key"}
        if not readable or not isinstance(request.body, dict):
            return 422, {"detail": "the body must be a JSON object"}
        return None

    def _claim(self, body: dict[str, Any]) -> tuple[int, Any]:
        worker_id = body.get("worker_id")
        if not isinstance(worker_id, str) or not worker_id:
            return 422, {"detail": "worker_id is required"}
        if not self._queue:
            return 200, {"job": None, "error": None}
        slot = self._slots[self._queue.popleft()]
        slot.claim(worker_id, self._clock())
        return 200, {"job": dict(slot.job), "error": None}

    def _status(self, buffer_job_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        slot = self._slots.get(buffer_job_id)
        if slot is None:
            return 404, {"detail": f"buffer job {buffer_job_id} not found"}
        if slot.gone_status is not None:
            return slot.gone_status, {
                "detail": f"buffer job {buffer_job_id} is no longer assigned to this worker"
            }
        status = body.get("status")
        if status not in STATUSES:
            return 422, {"detail": f"status must be one of {sorted(STATUSES)}, got {status!r}"}
        sender = body.get("worker_id")
        if slot.state == "queued" or (sender is not None and sender != slot.worker_id):
            return 409, {"detail": f"buffer job {buffer_job_id} is not claimed by this worker"}
        if slot.state in TERMINAL and self.terminal_conflict:
            return 409, {"detail": f"buffer job {buffer_job_id} is already {slot.state}"}
        if slot.record(status, body, self._clock(), self.lease):
            self._requeue(slot, None)
        return 200, {"detail": "ok"}

    # -- leases (orchestrator_leases) ---------------------------------------------------------

    def _renew(self, worker_id: str | None, buffer_job_id: object) -> None:
        slot = self._slots.get(buffer_job_id) if isinstance(buffer_job_id, str) else None
        if slot is not None and worker_id is not None:
            slot.renew(worker_id, self._clock())

    def _expire(self) -> list[str]:
        if self.lease is None:
            return []
        now, timeout = self._clock(), self.lease.timeout_s
        expired = [job_id for job_id, slot in self._slots.items() if slot.expired(now, timeout)]
        for buffer_job_id in expired:
            self._requeue(self._slots[buffer_job_id], LEASE_EXPIRED)
        return expired

    def _requeue(self, slot: JobSlot, taken_back: str | None) -> None:
        slot.release(taken_back)
        self._queue.append(slot.job["buffer_job_id"])
        self._changed.notify_all()

    def _take_fault(self, endpoint: Endpoint | None) -> Fault | None:
        if endpoint is None or not self._faults[endpoint]:
            return None
        armed = self._faults[endpoint][0]
        armed.remaining -= 1
        if armed.remaining == 0:
            self._faults[endpoint].popleft()
        return armed.fault

    def _record_answer(self, index: int, code: int | None) -> None:
        with self._changed:
            self._requests[index] = attrs.evolve(self._requests[index], answer=code)
            self._changed.notify_all()

    def _new_id(self) -> str:
        self._next_id += 1
        return f"b-{self._next_id:04d}"
