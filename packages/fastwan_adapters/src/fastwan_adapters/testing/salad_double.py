"""SaladCloud's job queue and its job-queue binary on each node, for tests: what feeds queue mode.

The tests of queue mode send what Salad's binary sends, one request at a time. A fleet is fed
by something that behaves like it, and this is that: a queue of jobs and, for each node
attached, one binary (``salad-http-job-queue-worker``) that does what v0.5/v0.6 do. From its
source (``SaladTechnologies/salad-cloud-job-queue-worker``):

- **Readiness gates the taking of jobs.** ``internal/workers/workers.go``: the binary polls the
  node's readiness (IMDS ``GetStatus``, every 5 s; three errors in a row count as not ready)
  and runs its job poller only while it is ready; a job already in hand runs on whatever
  readiness does. IMDS's ``ready`` is Salad's readiness probe of the container, which the
  container group points at ``GET /ready`` (docs/salad.md). The double polls ``GET /ready``
  itself, standing in for the probe and IMDS together: ready from its first 200, not ready
  after ``failure_threshold`` answers in a row that are not 200 (the probe's threshold).
- **One job at a time.** The same loop alternates an assignment phase (take one job) and an
  execute phase (wait for its handler); the double's binary is one thread doing the same.
- **The request.** ``cmd/salad-http-job-queue-worker/main.go``, ``executeJob``: ``POST`` to
  the connection's port and path with the job's input as the body, headers
  ``Content-Type: application/json`` and ``Salad-Job-Id``, on Go's default client: no time
  limit.
- **The answer.** 408, 429 or any 5xx, or an error (a dropped connection), rejects the job:
  the attempt failed and the queue runs the job again, up to 3 retries (4 attempts; Salad's
  Job Queues docs), maybe on another node. Any other status completes the job with the
  response body as its output (one over 10 MB is refused by the queue, ``CompleteJob``'s
  ``ResourceExhausted``, and the binary rejects the job instead).
- **Stop.** On SIGTERM/SIGINT the binary cancels its context: the request in flight is dropped
  and the job is neither completed nor rejected. The queue hands it out again later; Salad's
  docs count an interrupted instance's job as a failed attempt, and so does the double.

Every attempt is kept in a ledger (:class:`Attempt`), in order. Everything is thread-safe;
``wait_for`` waits for a condition on the double.

    with SaladQueueDouble(readiness_period_s=0.2) as salad:
        job_id = salad.add_job({"musetalk_job_id": "j-1", "prompt": "a cat"})
        salad.attach("node-1", "http://127.0.0.1:8000")
        assert salad.wait_for(lambda s: s.job(job_id).state is JobState.COMPLETED, timeout=60)
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, Self
from urllib.parse import urlsplit

import attrs

from fastwan_adapters.testing.serving import background

__all__ = [
    "MAX_OUTPUT_BYTES",
    "MAX_RETRIES",
    "Attempt",
    "JobState",
    "Outcome",
    "SaladJob",
    "SaladQueueDouble",
]

#: Salad retries a job up to 3 times: 4 attempts in all.
MAX_RETRIES: Final = 3
#: The largest output the queue takes (v0.6.0's limit, and Salad's docs).
MAX_OUTPUT_BYTES: Final = 10 * 1024 * 1024
_RETRY_STATUSES: Final = frozenset({408, 429})
_TAKE_WAIT_S: Final = 0.05


class Outcome(enum.Enum):
    """How one attempt ended, as the binary and the queue see it."""

    COMPLETED = "completed"  # any status but 408, 429, 5xx: the body is the job's output
    REJECTED = "rejected"  # 408, 429, 5xx, or an output over MAX_OUTPUT_BYTES: run it again
    DROPPED = "dropped"  # the connection broke without an answer: run it again
    STOPPED = "stopped"  # the binary stopped mid-request: neither completed nor rejected


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # every attempt failed


@attrs.frozen
class Attempt:
    """One POST of one job by one node's binary.

    Attributes:
        number: 1 for the job's first attempt.
        started, ended: ``time.monotonic()`` when the request went out and when it ended.
        status: the HTTP status answered; ``None`` when there was no answer.
        body: the answer's body (empty without one).
    """

    job_id: str
    number: int
    node: str
    started: float
    ended: float
    outcome: Outcome
    status: int | None = None
    body: bytes = b""
    error: str | None = None

    def output(self) -> Any:
        """The body as JSON (``None`` when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@attrs.define
class SaladJob:
    """A job in the queue: its input, its state, and its output once completed."""

    job_id: str
    input: bytes = attrs.field(repr=False)
    state: JobState = JobState.PENDING
    attempts: int = 0
    output: bytes | None = attrs.field(default=None, repr=False)
    available_at: float = 0.0


class SaladQueueDouble:
    """The queue and one binary per attached node; a context manager that stops them all.

    Args:
        max_retries: runs of a job after its first that failed (Salad: 3).
        readiness_period_s: how often each binary asks ``/ready`` (Salad: every 5 s at best).
        readiness_timeout_s: how long it waits for ``/ready`` (the probe's timeout).
        failure_threshold: answers in a row other than 200 before a ready node is not ready.
        requeue_delay_s: how long a job whose node stopped mid-request waits before it is
            handed out again (the queue noticing the node is gone).
    """

    def __init__(
        self,
        *,
        max_retries: int = MAX_RETRIES,
        readiness_period_s: float = 5.0,
        readiness_timeout_s: float = 5.0,
        failure_threshold: int = 3,
        requeue_delay_s: float = 0.0,
    ) -> None:
        self.max_retries = max_retries
        self.readiness_period_s = readiness_period_s
        self.readiness_timeout_s = readiness_timeout_s
        self.failure_threshold = failure_threshold
        self.requeue_delay_s = requeue_delay_s
        self._changed = threading.Condition(threading.RLock())
        self._jobs: dict[str, SaladJob] = {}
        self._queue: deque[str] = deque()
        self._attempts: list[Attempt] = []
        self._nodes: dict[str, _Binary] = {}

    def __enter__(self) -> SaladQueueDouble:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- arranging ------------------------------------------------------------------------

    def add_job(self, job_input: Mapping[str, Any] | bytes, *, job_id: str | None = None) -> str:
        """Queue a job (first in, first out); returns its Salad job id (a new UUID by default).
        ``job_input`` is sent as is when it is bytes (it may be broken, on purpose)."""
        data = job_input if isinstance(job_input, bytes) else json.dumps(dict(job_input)).encode()
        with self._changed:
            job_id = job_id or str(uuid.uuid4())
            if job_id in self._jobs:
                raise ValueError(f"job {job_id!r} is already in the queue")
            self._jobs[job_id] = SaladJob(job_id, data)
            self._queue.append(job_id)
            self._changed.notify_all()
        return job_id

    def attach(self, node: str, base_url: str, *, path: str = "/generate") -> None:
        """Start ``node``'s binary: it polls ``base_url/ready`` and posts jobs to ``base_url`` +
        ``path`` (the container group's job queue connection)."""
        with self._changed:
            running = self._nodes.get(node)
            if running is not None and not running.stopped.is_set():
                raise ValueError(f"node {node!r} already runs a binary; stop it first")
            binary = self._nodes[node] = _Binary(self, node, base_url, path)
        binary.start()

    def stop(self, node: str, *, wait_s: float = 5.0) -> str | None:
        """Stop ``node``'s binary as SIGTERM does: the request in flight is dropped (its job is
        neither completed nor rejected). Returns the job it dropped, if any."""
        with self._changed:
            binary = self._nodes.get(node)
        if binary is None:
            raise KeyError(f"no node {node!r} was attached")
        return binary.stop(wait_s)

    def close(self) -> None:
        with self._changed:
            binaries = list(self._nodes.values())
        for binary in binaries:
            binary.stop(5.0)

    # -- querying -------------------------------------------------------------------------

    def attempts(self, job_id: str | None = None) -> list[Attempt]:
        """The ledger: every attempt, in the order they ended (of one job, or all)."""
        with self._changed:
            return [a for a in self._attempts if job_id is None or a.job_id == job_id]

    def job(self, job_id: str) -> SaladJob:
        with self._changed:
            return attrs.evolve(self._jobs[job_id])

    def jobs(self) -> list[SaladJob]:
        with self._changed:
            return [attrs.evolve(job) for job in self._jobs.values()]

    def ready(self, node: str) -> bool:
        """Whether ``node``'s binary takes jobs now (its last readiness verdict)."""
        with self._changed:
            binary = self._nodes.get(node)
            return binary is not None and binary.ready and not binary.stopped.is_set()

    def in_flight(self, node: str) -> str | None:
        """The job ``node``'s binary is posting now, if any."""
        with self._changed:
            binary = self._nodes.get(node)
            return binary.job_id if binary is not None else None

    def wait_for(self, condition: Callable[[Self], bool], timeout: float = 5.0) -> bool:
        """Wait until ``condition(self)`` holds (re-checked whenever a job or node changes, and
        at least every 0.1 s); ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.1))
        return True

    # -- used by the binaries -------------------------------------------------------------

    def _take(self, binary: _Binary) -> SaladJob | None:
        """The next job for ``binary`` (first available in line), marked running; ``None`` if
        none is there within a short wait, or the binary stopped."""
        with self._changed:
            deadline = time.monotonic() + _TAKE_WAIT_S
            while not binary.stopped.is_set():
                now = time.monotonic()
                for job_id in self._queue:
                    job = self._jobs[job_id]
                    if job.available_at <= now:
                        self._queue.remove(job_id)
                        job.state, binary.job_id = JobState.RUNNING, job_id
                        job.attempts += 1
                        self._changed.notify_all()
                        return attrs.evolve(job)
                if now >= deadline:
                    return None
                self._changed.wait(deadline - now)
            return None

    def _settle(self, attempt: Attempt, binary: _Binary) -> None:
        with self._changed:
            self._attempts.append(attempt)
            job = self._jobs[attempt.job_id]
            binary.job_id = None
            if attempt.outcome is Outcome.COMPLETED:
                job.state, job.output = JobState.COMPLETED, attempt.body
            elif job.attempts > self.max_retries:
                job.state = JobState.FAILED
            else:
                job.state = JobState.PENDING
                delay = self.requeue_delay_s if attempt.outcome is Outcome.STOPPED else 0.0
                job.available_at = time.monotonic() + delay
                self._queue.append(job.job_id)
            self._changed.notify_all()

    def _put_back(self, job_id: str, binary: _Binary) -> None:
        """A job taken by a binary that stopped before posting it: back at the front, unspent."""
        with self._changed:
            job = self._jobs[job_id]
            job.state, job.attempts, binary.job_id = JobState.PENDING, job.attempts - 1, None
            self._queue.appendleft(job_id)
            self._changed.notify_all()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()


class _Binary:
    """One node's ``salad-http-job-queue-worker``: a readiness poller and a job loop."""

    def __init__(self, queue: SaladQueueDouble, node: str, base_url: str, path: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"base_url must be http://host:port, got {base_url!r}")
        self.queue, self.node = queue, node
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = path if path.startswith("/") else f"/{path}"
        self.ready = False
        self.job_id: str | None = None
        self.stopped = threading.Event()
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._threads = [
            background(self._poll_readiness, f"salad-ready-{node}"),
            background(self._run, f"salad-jobs-{node}"),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, wait_s: float) -> str | None:
        dropped = self.job_id
        self.stopped.set()
        with self._lock:
            if self._connection is not None and self._connection.sock is not None:
                with contextlib.suppress(OSError):  # the context cancelled: the request dropped
                    self._connection.sock.shutdown(socket.SHUT_RDWR)
        self.queue._notify()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(wait_s)
        return dropped

    def _poll_readiness(self) -> None:
        failures = 0
        while not self.stopped.is_set():
            if self._ready_answer() == 200:
                failures, ready = 0, True
            else:
                failures += 1
                ready = self.ready and failures < self.queue.failure_threshold
            if ready != self.ready:
                self.ready = ready
                self.queue._notify()
            self.stopped.wait(self.queue.readiness_period_s)

    def _ready_answer(self) -> int | None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.queue.readiness_timeout_s)
        try:
            connection.request("GET", "/ready")
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()

    def _run(self) -> None:
        while not self.stopped.is_set():
            if not self.ready:
                self.stopped.wait(_TAKE_WAIT_S)
                continue
            job = self.queue._take(self)
            if job is None:
                continue
            attempt = self._post(job)
            if attempt is None:  # stopped before the request went out
                self.queue._put_back(job.job_id, self)
                return
            self.queue._settle(attempt, self)

    def _post(self, job: SaladJob) -> Attempt | None:
        headers = {"Content-Type": "application/json", "Salad-Job-Id": job.job_id}
        connection = http.client.HTTPConnection(self.host, self.port, timeout=None)  # no time limit
        started = time.monotonic()
        status: int | None = None
        body = b""
        try:
            with self._lock:  # connected under the lock: a stop either sees the socket or comes first
                if self.stopped.is_set():
                    return None
                self._connection = connection
                connection.connect()
            connection.request("POST", self.path, body=job.input, headers=headers)
            response = connection.getresponse()
            status, body = response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            outcome = Outcome.STOPPED if self.stopped.is_set() else Outcome.DROPPED
            return Attempt(
                job.job_id, job.attempts, self.node, started, time.monotonic(), outcome, error=repr(error)
            )
        finally:
            with self._lock:
                self._connection = None
            connection.close()
        if self.stopped.is_set():  # answered, but the binary stopped first: it cannot complete it
            outcome = Outcome.STOPPED
        elif status in _RETRY_STATUSES or 500 <= status <= 599 or len(body) > MAX_OUTPUT_BYTES:
            outcome = Outcome.REJECTED
        else:
            outcome = Outcome.COMPLETED
        return Attempt(job.job_id, job.attempts, self.node, started, time.monotonic(), outcome, status, body)
