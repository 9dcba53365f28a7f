"""The orchestrator double's leases: who holds a claimed job, and when the job goes back.

The contract gives a claimed job to one worker and expects exactly one terminal status for
it; it does not say what the orchestrator does when that never comes. A fleet under fire needs
an answer, because a worker can die holding a job, and a test that kills workers must see the
job run again rather than wait forever. These are the rules of at-least-once queues (SQS's
visibility timeout, Temporal's heartbeat timeout), opt-in (``OrchestratorDouble(lease=...)``):

- a claim is renewed by each heartbeat of its worker that names the job (``current_job_id``)
  and by the ``running`` status; a job whose worker says nothing of it for ``intervals``
  heartbeat intervals goes back to the queue (*taken back*): a worker that died, or one that
  lost the claim's answer and came back without the job, no longer holds it;
- a ``failed`` status with ``retryable: true`` ends the claim and queues the job again (at most
  ``max_claims`` claims in all, when set);
- from then on the old holder's calls are late: its status is answered 409 (the double's
  answer to a status from a worker that is not the job's holder, or for a job not claimed).

Only requests the double processed count: a heartbeat answered by an injected fault (an
outage) renews nothing, as an orchestrator that is down records nothing.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

__all__ = ["LEASE_EXPIRED", "STATUSES", "TAKEN_BACK", "TERMINAL", "Claim", "JobSlot", "LeaseRules"]

TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
STATUSES: Final = TERMINAL | {"running"}
_HELD: Final = frozenset({"claimed", "running"})

#: Why a claim was taken back without a terminal status.
LEASE_EXPIRED: Final = "lease expired"
TAKEN_BACK: Final = "taken back"


@attrs.frozen
class LeaseRules:
    """How long a claim lives without news from its worker, and how often a job is retried.

    Attributes:
        heartbeat_interval_s: the workers' ``HEARTBEAT_INTERVAL_S``.
        intervals: heartbeat intervals without news of the job before it goes back.
        max_claims: a job is handed out at most this often (``None``: no limit); a retryable
            failure of its last claim then stays its final status.
    """

    heartbeat_interval_s: float = attrs.field(validator=attrs.validators.gt(0))
    intervals: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    max_claims: int | None = None

    @property
    def timeout_s(self) -> float:
        return self.heartbeat_interval_s * self.intervals


@attrs.define
class Claim:
    """One hand-out of a job.

    Attributes:
        number: 1 for the job's first claim, 2 for its second, ...
        worker_id: who claimed it.
        at, renewed: ``clock()`` at the claim and at its last renewal.
        status: the terminal status recorded for it (``None``: none recorded).
        taken_back: why it ended without one (``LEASE_EXPIRED``, ``TAKEN_BACK``), else ``None``.
    """

    number: int
    worker_id: str
    at: float
    renewed: float
    status: str | None = None
    taken_back: str | None = None

    @property
    def open(self) -> bool:
        return self.status is None and self.taken_back is None


@attrs.define
class JobSlot:
    """One job in the double: as added, its state (``queued``, ``claimed`` or the last status
    recorded), its holder, a standing answer once it is taken away, and its claims."""

    job: dict[str, Any]
    state: str = "queued"
    worker_id: str | None = None
    gone_status: int | None = None
    claims: list[Claim] = attrs.field(factory=list)

    @property
    def held(self) -> Claim | None:
        """The open claim of a job that is claimed or running, if any."""
        claim = self.claims[-1] if self.claims else None
        return claim if claim is not None and claim.open and self.state in _HELD else None

    def claim(self, worker_id: str, now: float) -> None:
        self.state, self.worker_id = "claimed", worker_id
        self.claims.append(Claim(len(self.claims) + 1, worker_id, now, now))

    def renew(self, worker_id: str, now: float) -> None:
        """News of the job from ``worker_id`` (a heartbeat naming it): renewed if it holds it."""
        held = self.held
        if held is not None and held.worker_id == worker_id:
            held.renewed = now

    def record(self, status: str, body: dict[str, Any], now: float, rules: LeaseRules | None) -> bool:
        """A status accepted for the job; ``True`` if the rules queue the job again."""
        held = self.held
        self.state = status
        if held is None:  # a job handed out by hand_out_again before claims were kept: no claim
            return False
        if status == "running":
            held.renewed = now
            return False
        held.status = status
        if rules is None or status != "failed" or body.get("retryable") is not True:
            return False
        return rules.max_claims is None or len(self.claims) < rules.max_claims

    def expired(self, now: float, timeout_s: float) -> bool:
        held = self.held
        return held is not None and now - held.renewed > timeout_s

    def release(self, taken_back: str | None) -> None:
        """Back to ``queued``; an open claim ends taken back, for ``taken_back``'s reason."""
        held = self.claims[-1] if self.claims else None
        if taken_back is not None and held is not None and held.open:
            held.taken_back = taken_back
        self.state, self.worker_id = "queued", None
