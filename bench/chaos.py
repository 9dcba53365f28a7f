"""A fleet under fire: both modes, many workers, faults from a seeded schedule; then every job is
checked against the doubles' ledgers and the store (issue 21).

K buffer workers run under the image's real supervisor (``python -m buffer_worker.fleet``,
``BUFFER_WORKERS=K``, a stub ``nvidia-smi``) against the orchestrator double with its lease
rules; K queue workers (``python -m queue_worker``) are fed by the Salad job-queue double, one
binary per node. All run the tiny model on the CPU. The buffer container stores to B2 (b2sdk's
``RawSimulator`` behind the production store, ``B2Double``) on odd seeds and to its local disk
(one ``OUTPUT_DIR`` for all its workers) on even ones; the queue nodes alternate. J jobs
(``chaos_jobs``) of mixed sizes, text- and image-to-video, some invalid, some cancelled, go half
to each mode. Faults follow a schedule drawn from the seed (``chaos_faults``). Then the faults
stop, every job is waited for, the buffer container is stopped and started once more so that
every status left in an outbox is flushed, and everything is checked (``chaos_checks``). The
workers are driven only as black boxes: programs, signals, HTTP, files and environment
variables.

    python bench/chaos.py --seed 7 --jobs 40 --workers 2

It prints a table, the violations (job and rule) if any, and last, alone, a line::

    chaos: seed 7, 40 jobs, 2+2 workers, 21 faults, 6 kills: lost 0, contradictions 0, re-runs 9, ...

and exits 1 when a job was lost, contradicted, or any rule broken; 0 otherwise. ``make chaos``
runs the long form (``CHAOS_ARGS``); ``tests/chaos`` runs a short one in ``make test``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).parent))

from chaos_faults import FAULTS_PER_JOB, Injector, plan_faults
from chaos_fleet import BufferFleet, QueueNode, RssMonitor
from chaos_jobs import PlannedJob, plan_jobs, png
from chaos_report import Outcome, judge, render, write_records
from fastwan_adapters.testing import (
    B2Double,
    Endpoint,
    JobState,
    LeaseRules,
    OrchestratorDouble,
    SaladQueueDouble,
)

HEARTBEAT_INTERVAL_S: Final = 1.0
LEASE_INTERVALS: Final = 5
MAX_CLAIMS: Final = 8
SHUTDOWN_GRACE_S: Final = "3"
_TICK_S: Final = 0.05
_TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="replays a run (default: drawn, printed)")
    parser.add_argument("--jobs", type=int, default=40, help="J: jobs in all, half to each mode")
    parser.add_argument("--workers", type=int, default=2, help="K: workers of each mode")
    parser.add_argument("--tiny-dir", type=Path, default=None, help="the tiny model (built if missing)")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it (logs)")
    parser.add_argument("--deadline", type=float, default=None, help="seconds for the jobs (default: scaled)")
    parser.add_argument(
        "--faults-per-job", type=float, default=FAULTS_PER_JOB, help="0: a calm run, to compare with"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10_000)
    if args.jobs < 2 or args.workers < 1:
        parser.error("--jobs must be at least 2 and --workers at least 1")
    print(f"chaos: seed {seed}, {args.jobs} jobs, {args.workers}+{args.workers} workers", flush=True)
    with _folder(args.keep) as folder:
        outcome = run(
            seed, args.jobs, args.workers, folder, args.tiny_dir, args.deadline, args.faults_per_job
        )
        verdict = judge(outcome)
        write_records(outcome, folder)
    print(render(outcome, verdict), flush=True)
    print(verdict.last_line, flush=True)
    return 0 if verdict.ok else 1


@contextmanager
def _folder(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    folder = Path(tempfile.mkdtemp(prefix="fastwan-chaos-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(
    seed: int,
    jobs: int,
    workers: int,
    folder: Path,
    tiny_dir: Path | None,
    deadline: float | None,
    faults_per_job: float = FAULTS_PER_JOB,
) -> Outcome:
    """One run; everything it saw, for the checks."""
    from fastwan_adapters.generator.tiny import ensure_tiny_model

    tiny = ensure_tiny_model(tiny_dir or folder / "tiny")
    rng = random.Random(seed)
    lease = LeaseRules(
        heartbeat_interval_s=HEARTBEAT_INTERVAL_S, intervals=LEASE_INTERVALS, max_claims=MAX_CLAIMS
    )
    with ExitStack() as stack:
        orch = stack.enter_context(OrchestratorDouble(lease=lease))
        b2 = stack.enter_context(B2Double())
        salad = stack.enter_context(SaladQueueDouble(readiness_period_s=0.5, readiness_timeout_s=5.0))
        images = stack.enter_context(_ImageServer())
        planned = plan_jobs(rng, jobs, seed=seed, image_url=images.url)
        schedule = plan_faults(rng, jobs, workers, faults_per_job)
        images.serve(planned)
        base = _base_env(orch, tiny, folder)
        # The buffer container's store: B2 on odd seeds, its local disk (one OUTPUT_DIR for all
        # its workers, as the supervisor gives them) on even ones; queue nodes alternate.
        nodes, local_outputs = [], []
        if seed % 2 == 0:
            local_outputs.append(folder / "outputs" / "buffer")
            local_outputs[0].mkdir(parents=True)
            buffer_store = {"OUTPUT_DIR": str(local_outputs[0])}
        else:
            buffer_store = b2.process_env()
        fleet = BufferFleet(folder / "buffer", workers, {**base, **_buffer_env(folder), **buffer_store})
        for index in range(workers):
            store: dict[str, str]
            if index % 2 == 0:
                output = folder / "outputs" / f"q{index}"
                output.mkdir(parents=True)
                local_outputs.append(output)
                store = {"OUTPUT_DIR": str(output)}
            else:
                store = b2.process_env()
            nodes.append(QueueNode(f"q{index}", folder / "queue", {**base, **store}, salad))
        ids = {job.key: _job_id(job) for job in planned}
        watch = _Watch(orch, salad, fleet, nodes, planned, ids)
        injector = Injector(
            orch, b2, salad, fleet, nodes, local_outputs, watch.buffer_phase, watch.queue_phase
        )
        rss = RssMonitor(fleet, nodes)
        stack.callback(_stop_everything, fleet, nodes)
        fleet.start()
        for node in nodes:
            node.start()
        rss.start()
        watch.wait_ready(injector, time.monotonic() + 300.0)
        started = time.monotonic()
        limit = deadline or 240.0 + 12.0 * jobs / workers
        watch.arrivals = _arrivals(planned, len(schedule), workers)
        _drive(watch, injector, schedule, started + limit)
        injector.heal()
        _wait(watch, injector, started + limit + 120.0)
        jobs_done = time.monotonic()
        rss.stop()
        watch.final_restart(injector)
        for node in nodes:
            node.end()
        return Outcome(
            seed=seed,
            workers=workers,
            planned=planned,
            ids=ids,
            orch=orch,
            salad=salad,
            b2=b2,
            fleet=fleet,
            nodes=nodes,
            local_outputs=local_outputs,
            injector=injector,
            rss=rss,
            seconds=jobs_done - started,
            temp_root=folder / "tmp",
            heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
            cancelled=watch.cancelled,
        )
    raise AssertionError("unreachable")  # pragma: no cover  (ExitStack does not swallow)


def _job_id(job: PlannedJob) -> str:
    """The buffer job id, or the Salad job id (a UUID, as Salad's)."""
    return f"b-{job.key}" if job.mode == "buffer" else str(uuid.uuid5(uuid.NAMESPACE_URL, job.key))


def _arrivals(planned: list[PlannedJob], faults: int, workers: int) -> list[tuple[int, PlannedJob]]:
    """When each job is handed out, in faults applied before it: a job for each worker at once,
    then the rest spread over the schedule, so that jobs keep coming (and faults keep landing on
    jobs in hand) from the first fault to the last, however long each fault takes to apply."""
    ahead = 3  # faults' worth of jobs handed out early: a few wait in each queue at any time
    return [
        (0 if index < 2 * workers or faults == 0 else max(0, index * faults // len(planned) - ahead), job)
        for index, job in enumerate(planned)
    ]


def _drive(watch: _Watch, injector: Injector, schedule: list[Any], deadline: float) -> None:
    """Hand the jobs out and apply the schedule's faults as they fall due, until every job is done
    (or the deadline)."""
    events = iter(schedule)
    event = next(events, None)
    applied = 0
    due = time.monotonic() + (event.gap_s if event else 0)
    while not watch.all_done() and time.monotonic() < deadline:
        watch.tick(applied if event is not None else len(schedule))
        injector.tick()
        if event is not None and time.monotonic() >= due:
            injector.apply(event)
            applied += 1
            event = next(events, None)
            due = time.monotonic() + (event.gap_s if event else 0)
        time.sleep(_TICK_S)


def _wait(watch: _Watch, injector: Injector, deadline: float) -> None:
    while not watch.all_done() and time.monotonic() < deadline:
        watch.tick(None)
        injector.tick()
        time.sleep(_TICK_S)


def _stop_everything(fleet: BufferFleet, nodes: list[QueueNode]) -> None:
    """Whatever happened, no process outlives the run."""
    for node in nodes:
        node.end(timeout=15)
    fleet.stop(timeout=30)
    fleet.kill_supervisor()


def _base_env(orch: OrchestratorDouble, tiny: Path, folder: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("B2_", "BUFFER_", "GPU_", "HEARTBEAT_", "SHUTDOWN_", "METRICS_", "FASTWAN_", "OUTPUT_")
        )
    }
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "ORCHESTRATOR_BASE_URL": orch.url,
            "INTERNAL_API_KEY": orch.api_key,
            "FASTWAN_MODEL": "tiny",
            "FASTWAN_TINY_DIR": str(tiny),
            "FASTWAN_WARMUP": "0",
            "HF_HUB_OFFLINE": "1",
            "GPU_CLASS": "chaos CPU",
            "SHUTDOWN_GRACE_S": SHUTDOWN_GRACE_S,
            "ALLOW_PRIVATE_IMAGE_URLS": "1",
            "TMPDIR": str(folder / "tmp"),
            "OMP_NUM_THREADS": "1",  # a tiny model gains nothing from threads on a shared CPU
            "LOG_FORMAT": "console",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _buffer_env(folder: Path) -> dict[str, str]:
    return {
        "HEARTBEAT_INTERVAL_S": str(HEARTBEAT_INTERVAL_S),
        "BUFFER_POLL_INTERVAL_S": "0.25",
        "ORCHESTRATOR_RETRY_INITIAL_S": "0.2",
        "ORCHESTRATOR_CALL_DEADLINE_S": "3",
        "STATE_DIR": str(folder / "state"),
    }


class _Watch:
    """What the run looks at while it runs: which jobs are done, what each worker is doing, the
    cancels the plan asks for."""

    def __init__(
        self,
        orch: OrchestratorDouble,
        salad: SaladQueueDouble,
        fleet: BufferFleet,
        nodes: list[QueueNode],
        planned: list[PlannedJob],
        ids: dict[str, str],
    ) -> None:
        self.orch, self.salad, self.fleet, self.nodes = orch, salad, fleet, nodes
        self.ids = ids
        self.arrivals: list[tuple[int, PlannedJob]] = []
        self.added: set[str] = set()
        self.to_cancel = {ids[job.key]: job.key for job in planned if job.cancel}
        self.buffer_ids = [ids[job.key] for job in planned if job.mode == "buffer"]
        self.queue_ids = [ids[job.key] for job in planned if job.mode == "queue"]
        self.cancelled: list[str] = []
        self._keys = {job_id: key for key, job_id in ids.items()}
        self._scanned = 0
        self._progress: dict[tuple[str, str | None], dict[str, Any]] = {}

    def all_done(self) -> bool:
        return (
            not self.arrivals
            and all(self.orch.job_state(b) in _TERMINAL for b in self.buffer_ids)
            and all(self.salad.job(q).state in (JobState.COMPLETED, JobState.FAILED) for q in self.queue_ids)
        )

    def tick(self, faults_applied: int | None = 0) -> None:
        """Hand out the jobs due after ``faults_applied`` faults (``None``: all), send the cancels
        due, note the workers started and gone."""
        self.fleet.poll()
        while self.arrivals and (faults_applied is None or self.arrivals[0][0] <= faults_applied):
            _, job = self.arrivals.pop(0)
            self.added.add(self.ids[job.key])
            if job.mode == "buffer":
                self.orch.add_job(job.body, buffer_job_id=self.ids[job.key])
            else:
                self.salad.add_job(job.body, job_id=self.ids[job.key])
        for buffer_job_id, key in list(self.to_cancel.items()):
            if buffer_job_id not in self.added:
                continue
            if self.orch.job_state(buffer_job_id) in _TERMINAL:
                del self.to_cancel[buffer_job_id]
            elif self._running(key):
                self.orch.cancel(buffer_job_id)
                self.cancelled.append(key)
                del self.to_cancel[buffer_job_id]

    def _running(self, key: str) -> bool:
        last = self._last_progress(key)
        return last is not None and last.get("phase") == "inference"

    def _last_progress(self, key: str, worker_id: str | None = None) -> dict[str, Any] | None:
        """The last progress call for ``key`` (from ``worker_id``), read incrementally: the
        ledger grows by thousands of calls a run, and the aims look at it every few ms."""
        new = self.orch.requests(since=self._scanned)
        self._scanned += len(new)
        for request in new:
            body = request.body if isinstance(request.body, dict) else {}
            if request.endpoint is Endpoint.PROGRESS and request.ident:
                self._progress[(request.ident, None)] = body
                self._progress[(request.ident, body.get("worker_id"))] = body
        return self._progress.get((key, worker_id))

    def buffer_phase(self, worker: str) -> str:
        """What a buffer worker is doing, as the orchestrator sees it."""
        if self.fleet.current(worker) is None:
            return "down"
        self._last_progress("")  # brings the recent requests up to date
        if any(
            r.endpoint is Endpoint.CLAIM
            and r.answer is None
            and isinstance(r.body, dict)
            and r.body.get("worker_id") == worker
            for r in self.orch.requests(since=max(0, self._scanned - 64))
        ):
            return "claim"
        if any((self.fleet.state_dir(worker) / "status-outbox").glob("*.status.json")):
            return "flush"
        held = self.orch.held_by(worker)
        if held:
            return _phase(self._last_progress(self._keys[held[-1]], worker))
        return "idle"

    def queue_phase(self, node: QueueNode) -> str:
        if not node.running:
            return "down"
        job_id = self.salad.in_flight(node.name)
        if job_id is None:
            return "idle"
        return _phase(self._last_progress(self._keys[job_id], f"chaos-{node.name}"))

    def wait_ready(self, injector: Injector, deadline: float) -> None:
        """Until every buffer worker has claimed once and every queue node is ready: the faults
        start then, not during the first model loads."""
        while time.monotonic() < deadline:
            injector.tick()
            self.fleet.poll()
            claimed = {
                r.body.get("worker_id")
                for r in self.orch.requests(Endpoint.CLAIM)
                if isinstance(r.body, dict)
            }
            if set(self.fleet.ids) <= claimed and all(self.salad.ready(node.name) for node in self.nodes):
                return
            time.sleep(0.2)

    def final_restart(self, injector: Injector) -> None:
        """The buffer container stopped and started once more: whatever its workers left in an
        outbox or a journal is flushed before they claim (the promise: no status lost). Done when
        every worker has claimed once, or after a minute."""
        self.fleet.stop()
        self.fleet.start()
        claims_before = len(self.orch.requests(Endpoint.CLAIM))
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            injector.tick()
            claimed = {
                r.body.get("worker_id")
                for r in self.orch.requests(Endpoint.CLAIM)[claims_before:]
                if isinstance(r.body, dict)
            }
            if set(self.fleet.ids) <= claimed:
                break
            time.sleep(0.2)
        self.fleet.stop()


def _phase(progress: dict[str, Any] | None) -> str:
    if progress is None:
        return "claimed"
    if progress.get("status") != "running":
        return "ending"
    return str(progress.get("phase") or "running")


class _ImageServer:
    """The first frames of the ``image_url`` jobs, on loopback."""

    def __init__(self) -> None:
        self.images: dict[str, bytes] = {}
        images = self.images

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = images.get(self.path.lstrip("/"))
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve(self, planned: list[PlannedJob]) -> None:
        for index, job in enumerate(planned):
            if job.image == "url":
                self.images[f"{job.key}.png"] = png(job.width, job.height, index)

    def __enter__(self) -> _ImageServer:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":
    sys.exit(main())
