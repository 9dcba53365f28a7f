"""The chaos run's faults: a schedule drawn from the seed, and what applying each one does.

The schedule is a list of events (a wait, a kind, its parameters, its victim), all drawn from
the seed before the run starts, so that ``--seed N`` replays the same faults in the same order
with the same parameters. When they land among the workers' own steps depends on the machine:
a replay is the same attack, not the same interleaving.

Kinds, and what the worker must survive from each:

- the orchestrator (its double): a burst of 503s on one endpoint, latency, dropped connections,
  an answer dripped a byte at a time, a full outage (every call refused for seconds), a 409 (a
  job taken back from its worker, as when its lease ran out);
- B2 (its double, b2sdk's simulator): 503s, latency and dropped connections on uploads, an
  outage of every call; the local disk: a queue node's ``OUTPUT_DIR`` unusable for seconds;
- the processes: SIGKILL of a buffer worker (its restart by the supervisor early, or late:
  12-20 s) or of a queue node, each aimed at a moment (mid-claim, mid-step, mid-decode,
  mid-upload, mid-flush of the last run's statuses); SIGTERM of the buffer container (every
  worker stops within its grace, the container starts again) or of a queue node (the app and
  Salad's binary at once, as the image's entrypoint does: the binary drops the request in
  flight). Salad's binary never restarts alone: the entrypoint stops the app when the binary
  exits, so a binary that dies is a node that stops.

A kill aimed at a moment waits a few seconds for it (and makes it likelier: a slow upload, a
refused status so that one waits in the outbox), then kills whatever the worker is doing; the
report counts kills by the phase the worker was last seen in, not by the one aimed at.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from chaos_fleet import BufferFleet, QueueNode
from fastwan_adapters.testing import B2Call, B2Double, Endpoint, Fault, OrchestratorDouble, SaladQueueDouble

__all__ = ["FaultEvent", "Injector", "plan_faults"]

_T = TypeVar("_T")

#: kind -> weight in the schedule.
_KINDS: Final = {
    "orchestrator 5xx burst": 6,
    "orchestrator latency": 4,
    "orchestrator dropped connections": 4,
    "orchestrator dripping answer": 2,
    "orchestrator outage": 3,
    "orchestrator 409": 3,
    "B2 5xx burst": 3,
    "B2 latency": 2,
    "B2 dropped connections": 2,
    "B2 outage": 2,
    "local disk unusable": 2,
    "SIGKILL buffer worker": 8,
    "SIGTERM buffer container": 2,
    "SIGKILL queue node": 5,
    "SIGTERM queue node": 4,
}
_ENDPOINTS: Final = (Endpoint.CLAIM, Endpoint.HEARTBEAT, Endpoint.STATUS, Endpoint.PROGRESS)
_BUFFER_AIMS: Final = ("claim", "inference", "decoding", "uploading", "flush", "any")
_QUEUE_AIMS: Final = ("inference", "decoding", "uploading", "any")
#: A late restart: 12-20 s from the SIGKILL to the worker running again.
LATE_RESTART_S: Final = (12.0, 20.0)
_LATE_SHARE: Final = 0.4
_AIM_WAIT_S: Final = 8.0
_POLL_S: Final = 0.02
FAULTS_PER_JOB: Final = 0.5
MEAN_GAP_S: Final = 1.5


@attrs.frozen
class FaultEvent:
    """One fault of the schedule: applied ``gap_s`` after the one before."""

    gap_s: float
    kind: str
    params: dict[str, Any] = attrs.field(factory=dict)


def plan_faults(
    rng: random.Random, jobs: int, workers: int, per_job: float = FAULTS_PER_JOB
) -> list[FaultEvent]:
    """The run's schedule: about ``FAULTS_PER_JOB`` faults a job, at least 8. The third fault is
    always a SIGKILL of a buffer worker mid-step with a late restart, and the fifth a SIGKILL
    of a queue node mid-step, so that every run, the shortest too, has both. ``per_job`` 0: no
    fault at all (a calm run, to compare with)."""
    kinds, weights = zip(*_KINDS.items(), strict=True)
    events = []
    for index in range(max(8, round(jobs * per_job)) if per_job > 0 else 0):
        kind = {2: "SIGKILL buffer worker", 4: "SIGKILL queue node"}.get(index) or rng.choices(
            kinds, weights
        )[0]
        params = _params(rng, kind, workers)
        if index in (2, 4):
            params["aim"] = "inference"
        if index == 2:
            params["late_s"] = round(rng.uniform(*LATE_RESTART_S), 1)
        events.append(FaultEvent(round(rng.expovariate(1 / MEAN_GAP_S), 2), kind, params))
    return events


def _params(rng: random.Random, kind: str, workers: int) -> dict[str, Any]:
    params: dict[str, Any] = {"victim": rng.randrange(workers)}
    if kind.startswith("orchestrator") and kind not in ("orchestrator outage", "orchestrator 409"):
        params["endpoint"] = rng.choice(_ENDPOINTS).value
        params["times"] = rng.randint(1, 5)
        params["seconds"] = round(rng.uniform(0.3, 2.5), 2)
    elif kind.endswith("outage") or kind == "local disk unusable":
        params["seconds"] = round(rng.uniform(1.5, 6.0), 1)
        params["drop"] = rng.random() < 0.3
    elif kind.startswith("B2"):
        params["times"] = rng.randint(1, 4)
        params["seconds"] = round(rng.uniform(1.0, 3.0), 1)
    elif kind == "SIGKILL buffer worker":
        params["aim"] = rng.choice(_BUFFER_AIMS)
        late = rng.random() < _LATE_SHARE
        params["late_s"] = round(rng.uniform(*LATE_RESTART_S), 1) if late else 0.0
    elif kind == "SIGKILL queue node":
        params["aim"] = rng.choice(_QUEUE_AIMS)
        params["down_s"] = round(rng.uniform(1.0, 4.0), 1)
    else:  # SIGTERMs, the binary's restart: aimed at a job in hand, which they must not lose
        params["aim"] = rng.choice(("inference", "decoding", "any"))
        params["down_s"] = round(rng.uniform(1.0, 3.0), 1)
    return params


@attrs.define
class Injector:
    """Applies faults to the run's doubles and processes; records what it did.

    Attributes:
        applied: kind -> count. kills: phase seen at the kill -> count. windows: when a fault
            could delay heartbeats, as (start, end) of ``time.monotonic()``.
    """

    orch: OrchestratorDouble
    b2: B2Double
    salad: SaladQueueDouble
    fleet: BufferFleet
    nodes: list[QueueNode]
    local_outputs: list[Path]
    buffer_phase: Callable[[str], str]
    queue_phase: Callable[[QueueNode], str]
    applied: Counter[str] = attrs.field(factory=Counter)
    kills: Counter[str] = attrs.field(factory=Counter)
    late_restarts: list[tuple[str, float, int]] = attrs.field(factory=list)  # (worker, when, start)
    windows: list[tuple[float, float]] = attrs.field(factory=list)
    timeline: list[str] = attrs.field(factory=list)
    last_seen: str = ""
    _pending: list[tuple[float, Callable[[], None]]] = attrs.field(factory=list)

    def apply(self, event: FaultEvent) -> None:
        """Apply one fault; counted unless it found nothing to act on (a node already down)."""
        handlers: dict[str, Callable[..., bool | None]] = {
            "orchestrator 5xx burst": self._orchestrator_5xx_burst,
            "orchestrator latency": self._orchestrator_latency,
            "orchestrator dropped connections": self._orchestrator_dropped_connections,
            "orchestrator dripping answer": self._orchestrator_dripping_answer,
            "orchestrator outage": self._orchestrator_outage,
            "orchestrator 409": self._orchestrator_409,
            "B2 5xx burst": self._b2_5xx_burst,
            "B2 latency": self._b2_latency,
            "B2 dropped connections": self._b2_dropped_connections,
            "B2 outage": self._b2_outage,
            "local disk unusable": self._local_disk_unusable,
            "SIGKILL buffer worker": self._sigkill_buffer_worker,
            "SIGTERM buffer container": self._sigterm_buffer_container,
            "SIGKILL queue node": self._sigkill_queue_node,
            "SIGTERM queue node": self._sigterm_queue_node,
        }
        started = time.monotonic()
        done = handlers[event.kind](**event.params) is not False
        if done:
            self.applied[event.kind] += 1
        self.timeline.append(
            f"{started:.2f} {event.kind} {event.params} -> {'applied' if done else 'nothing to act on'}"
            + (f", seen {self.last_seen}" if self.last_seen else "")
        )
        self.last_seen = ""

    def tick(self) -> None:
        """Run what is due: the end of an outage, a restart after its time down."""
        now = time.monotonic()
        due = [action for at, action in self._pending if at <= now]
        self._pending = [(at, action) for at, action in self._pending if at > now]
        for action in due:
            action()
        for node in self.nodes:
            node.tick()

    def heal(self) -> None:
        """The run's end: every fault lifted now, every node up again."""
        for _, action in self._pending:
            action()
        self._pending.clear()
        self.orch.clear_faults()
        self.b2.clear_faults()
        for node in self.nodes:
            if node.up_at is not None:
                node.up_at = 0.0
                node.tick()

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        self._pending.append((time.monotonic() + seconds, action))

    def _window(self, seconds: float) -> None:
        now = time.monotonic()
        self.windows.append((now, now + seconds + 1.0))

    # -- the orchestrator ---------------------------------------------------------------------

    def _orchestrator_5xx_burst(self, endpoint: str, times: int, **_: Any) -> None:
        self.orch.fail_next(Endpoint(endpoint), Fault.answer(503), times)

    def _orchestrator_latency(self, endpoint: str, times: int, seconds: float, **_: Any) -> None:
        self.orch.fail_next(Endpoint(endpoint), Fault.delayed(seconds), times)
        if endpoint == Endpoint.HEARTBEAT.value:
            self._window(seconds * times)

    def _orchestrator_dropped_connections(self, endpoint: str, times: int, **_: Any) -> None:
        self.orch.fail_next(Endpoint(endpoint), Fault.dropped(), times)

    def _orchestrator_dripping_answer(self, endpoint: str, **_: Any) -> None:
        self.orch.fail_next(Endpoint(endpoint), Fault.dripped(0.05))
        if endpoint == Endpoint.HEARTBEAT.value:
            self._window(10.0)

    def _orchestrator_outage(self, seconds: float, drop: bool, **_: Any) -> None:
        fault = Fault.dropped() if drop else Fault.answer(503)
        for endpoint in _ENDPOINTS:
            self.orch.fail_next(endpoint, fault, times=1_000_000)
        self._window(seconds)
        self._later(seconds, self.orch.clear_faults)

    def _orchestrator_409(self, victim: int, **_: Any) -> bool:
        held = [
            job_id for job_id in self.orch.job_ids() if self.orch.job_state(job_id) in ("claimed", "running")
        ]
        return bool(held) and self.orch.take_back(held[victim % len(held)])

    # -- B2 and the local disk ------------------------------------------------------------------

    def _b2_5xx_burst(self, times: int, **_: Any) -> None:
        self.b2.fail_next(B2Call.UPLOAD, Fault.answer(503), times)

    def _b2_latency(self, times: int, seconds: float, **_: Any) -> None:
        self.b2.fail_next(B2Call.UPLOAD, Fault.delayed(seconds), times)

    def _b2_dropped_connections(self, times: int, **_: Any) -> None:
        self.b2.fail_next(B2Call.UPLOAD, Fault.dropped(), times)

    def _b2_outage(self, seconds: float, drop: bool, **_: Any) -> None:
        self.b2.outage(Fault.dropped() if drop else Fault.answer(503))
        self._later(seconds, lambda: self.b2.outage(None))

    def _local_disk_unusable(self, victim: int, seconds: float, **_: Any) -> bool:
        """The folder replaced by a file: every write (and the store's mkdir) fails."""
        if not self.local_outputs:
            return False
        folder = self.local_outputs[victim % len(self.local_outputs)]
        aside = folder.with_name(folder.name + ".aside")
        if aside.exists():
            return False
        folder.rename(aside)
        folder.write_text("not a folder: the chaos run made this disk unusable\n")

        def restore() -> None:
            folder.unlink(missing_ok=True)
            if folder.is_dir():  # a worker's mkdir won the race after the file went: merge back
                for item in aside.iterdir():
                    item.replace(folder / item.name)
                shutil.rmtree(aside)
            else:
                aside.rename(folder)

        self._later(seconds, restore)
        return True

    # -- the processes --------------------------------------------------------------------------

    def _sigkill_buffer_worker(self, victim: int, aim: str, late_s: float, **_: Any) -> bool:
        if aim == "claim":
            self.orch.fail_next(Endpoint.CLAIM, Fault.delayed(2.0), times=2 * len(self.fleet.ids))
        elif aim == "uploading":
            self.b2.fail_next(B2Call.UPLOAD, Fault.delayed(2.5))
        elif aim == "flush":
            self.orch.fail_next(Endpoint.STATUS, Fault.answer(503), times=6)
        workers = _rotated(self.fleet.ids, victim)
        found = self._await([(w, lambda w=w: self.buffer_phase(w)) for w in workers], aim)
        if found is None:
            return False
        worker, seen = found
        if not self.fleet.kill(worker, late_s=late_s):
            return False
        self.kills[f"buffer {seen}"] += 1
        if late_s > 0:
            self.late_restarts.append((worker, time.monotonic(), self.fleet.starts))
        return True

    def _sigterm_buffer_container(self, aim: str, down_s: float, **_: Any) -> None:
        found = self._await([(w, lambda w=w: self.buffer_phase(w)) for w in self.fleet.ids], aim)
        self._window(down_s + 30.0)
        self.fleet.stop()
        self.kills[f"buffer container SIGTERM ({found[1] if found else 'down'})"] += 1
        self._later(down_s, self.fleet.start)

    def _sigkill_queue_node(self, victim: int, aim: str, down_s: float, **_: Any) -> bool:
        nodes = _rotated(self.nodes, victim)
        if aim == "uploading":  # on B2 nodes (a local disk's write takes milliseconds)
            nodes = [node for node in nodes if "OUTPUT_DIR" not in node.env] or nodes
            self.b2.fail_next(B2Call.UPLOAD, Fault.delayed(2.5))
        found = self._await([(n, lambda n=n: self.queue_phase(n)) for n in nodes], aim)
        if found is None or not found[0].kill(down_s):
            return False
        self.kills[f"queue {found[1]}"] += 1
        return True

    def _sigterm_queue_node(self, victim: int, aim: str, down_s: float, **_: Any) -> bool:
        found = self._await([(n, lambda n=n: self.queue_phase(n)) for n in _rotated(self.nodes, victim)], aim)
        if found is None or not found[0].stop(down_s):
            return False
        self.kills[f"queue node SIGTERM ({found[1]})"] += 1
        return True

    def _await(self, candidates: list[tuple[_T, Callable[[], str]]], aim: str) -> tuple[_T, str] | None:
        """Wait up to a few seconds for one of the candidates (a worker and its phase) to be in
        the phase aimed at; that one, or at the end the first that runs at all, with the phase
        seen. ``None`` when none runs."""
        deadline = time.monotonic() + _AIM_WAIT_S
        while True:
            seen = [(candidate, phase()) for candidate, phase in candidates]
            running = [(candidate, phase) for candidate, phase in seen if phase != "down"]
            hit = next(((c, p) for c, p in running if aim == "any" or p == aim), None)
            if hit is not None or time.monotonic() >= deadline:
                found = hit or (running[0] if running else None)
                self.last_seen = f"{found[1] if found else 'down'} (aimed at {aim})"
                return found
            time.sleep(_POLL_S)
            self.tick()


def _rotated(items: list[_T], start: int) -> list[_T]:
    """``items`` from ``start`` on, then the ones before: the victim drawn first, then the rest."""
    start %= len(items)
    return items[start:] + items[:start]
