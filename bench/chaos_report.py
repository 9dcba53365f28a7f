"""The chaos run's records turned into the checks' input, the verdict, and the table.

:func:`judge` reads what the run left (the doubles' ledgers, the store, the state and temp
folders, the memory samples) into ``chaos_checks``' plain records, runs every check, and counts
what the table and the last line report. :func:`render` prints the table.
"""

from __future__ import annotations

import io
import itertools
import statistics
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs
import av

from chaos_checks import (
    LONG_LIFE_JOBS,
    BufferRecord,
    ClaimView,
    ProgressCall,
    QueueAttempt,
    QueueRecord,
    RssLife,
    StatusCall,
    Violation,
    check_buffer_job,
    check_heartbeat_gaps,
    check_queue_job,
    check_rss,
    rerun_causes,
    second_half_growth,
)
from chaos_faults import Injector
from chaos_fleet import BufferFleet, Life, QueueNode, RssMonitor
from chaos_jobs import PlannedJob
from fastwan_adapters.testing import Attempt, B2Double, Endpoint, OrchestratorDouble, SaladQueueDouble

__all__ = ["Outcome", "Verdict", "judge", "last_line", "render", "write_records"]

#: A worker's RSS after its jobs may be at most this times its RSS after its first, plus slack
#: (chaos_checks.check_rss).
RSS_RATIO = 1.75
RSS_SLACK_MIB = 64.0
_FINAL = frozenset({"succeeded", "failed", "cancelled"})


@attrs.define
class Outcome:
    """Everything one run saw."""

    seed: int
    workers: int
    planned: list[PlannedJob]
    ids: dict[str, str]  # key -> buffer job id or Salad job id
    orch: OrchestratorDouble
    salad: SaladQueueDouble
    b2: B2Double
    fleet: BufferFleet
    nodes: list[QueueNode]
    local_outputs: list[Path]
    injector: Injector
    rss: RssMonitor
    seconds: float
    temp_root: Path
    heartbeat_interval_s: float
    cancelled: list[str] = attrs.field(factory=list)  # the jobs the orchestrator cancelled mid-run


@attrs.define
class Verdict:
    violations: list[Violation]
    buffer: list[BufferRecord]
    queue: list[QueueRecord]
    ends: Counter[str]
    reruns: Counter[str]
    rss_growth_mib: list[float]
    heartbeat_gap_s: float = 0.0  # the largest not excused (start-up, a fault on the heartbeat)
    second_half_mib: float | None = None  # the largest RSS growth over a long life's second half
    last_line: str = ""

    @property
    def lost(self) -> list[Violation]:
        return [v for v in self.violations if v.rule in ("lost", "completes once")]

    @property
    def contradictions(self) -> list[Violation]:
        return [v for v in self.violations if v.contradiction]

    @property
    def ok(self) -> bool:
        return not self.violations


def judge(outcome: Outcome) -> Verdict:
    buffer = [_buffer_record(outcome, job) for job in outcome.planned if job.mode == "buffer"]
    queue = [_queue_record(outcome, job) for job in outcome.planned if job.mode == "queue"]
    violations: list[Violation] = []
    for record in buffer:
        violations += check_buffer_job(record, final_states=_FINAL)
    for queued in queue:
        violations += check_queue_job(queued)
    violations += _check_outputs(outcome, buffer, queue)
    violations += _check_leftovers(outcome)
    lives = _rss_lives(outcome)
    violations += check_rss(lives, ratio=RSS_RATIO, slack_mib=RSS_SLACK_MIB)
    gaps, largest_gap = _check_heartbeats(outcome)
    violations += gaps
    verdict = Verdict(
        violations,
        buffer,
        queue,
        _ends(buffer, queue),
        rerun_causes(buffer, queue),
        [life.last - life.first for life in lives if life.jobs >= 2],
        largest_gap,
        second_half_growth(lives),
    )
    verdict.last_line = last_line(outcome, verdict)
    return verdict


# -- records ----------------------------------------------------------------------------------


def _progress(orch: OrchestratorDouble, key: str) -> list[ProgressCall]:
    return [
        ProgressCall(r.at, str(r.body.get("status")), r.body.get("worker_id"), r.body.get("error_code"))
        for r in orch.requests(Endpoint.PROGRESS)
        if r.ident == key and isinstance(r.body, dict)
    ]


def _buffer_record(outcome: Outcome, job: PlannedJob) -> BufferRecord:
    orch, buffer_job_id = outcome.orch, outcome.ids[job.key]
    statuses = [
        StatusCall(
            r.at,
            str(r.body.get("status")),
            r.body.get("worker_id"),
            r.answer,
            r.body.get("error_code"),
            r.body.get("retryable"),
            r.body.get("output_url"),
        )
        for r in orch.requests(Endpoint.STATUS)
        if r.ident == buffer_job_id and isinstance(r.body, dict)
    ]
    claims = [
        ClaimView(c.number, c.worker_id, c.at, c.status, c.taken_back) for c in orch.claims_of(buffer_job_id)
    ]
    return BufferRecord(
        buffer_job_id,
        job.key,
        job.invalid,
        claims,
        statuses,
        _progress(orch, job.key),
        orch.job_state(buffer_job_id),
    )


def _queue_record(outcome: Outcome, job: PlannedJob) -> QueueRecord:
    salad_id = outcome.ids[job.key]
    attempts = [
        QueueAttempt(a.number, a.node, a.started, a.ended, a.outcome.value, a.status, a.output())
        for a in outcome.salad.attempts(salad_id)
    ]
    state = outcome.salad.job(salad_id).state.value
    return QueueRecord(salad_id, job.key, job.invalid, state, attempts, _progress(outcome.orch, job.key))


def _ends(buffer: list[BufferRecord], queue: list[QueueRecord]) -> Counter[str]:
    ends: Counter[str] = Counter()
    for record in buffer:
        recorded = [s for s in record.statuses if s.recorded and s.status in _FINAL]
        last = recorded[-1] if recorded else None
        ends[_end_word(last.status, last.error_code) if last else f"not ended ({record.final_state})"] += 1
    for queued in queue:
        done = [a for a in queued.attempts if a.outcome == "completed"]
        body = done[-1].body if done and isinstance(done[-1].body, dict) else {}
        ends[
            _end_word(str(body.get("status")), body.get("error_code"))
            if done
            else f"not completed ({queued.state})"
        ] += 1
    return ends


def _end_word(status: str, error_code: str | None) -> str:
    return f"{status} ({error_code})" if status != "succeeded" and error_code else status


# -- the store and the folders ------------------------------------------------------------------


def _check_outputs(outcome: Outcome, buffer: list[BufferRecord], queue: list[QueueRecord]) -> list[Violation]:
    """Every succeeded job's MP4: in the store under its name, decodable, of the size asked."""
    by_key = {job.key: job for job in outcome.planned}
    found = []
    urls: list[tuple[str, str, str]] = []  # (subject, key, url)
    for record in buffer:
        for status in record.statuses:
            if status.recorded and status.status == "succeeded" and status.output_url:
                urls.append((f"{record.buffer_job_id} ({record.key}, buffer)", record.key, status.output_url))
    for queued in queue:
        for attempt in queued.attempts:
            body = attempt.body if isinstance(attempt.body, dict) else {}
            if attempt.outcome == "completed" and body.get("status") == "succeeded":
                urls.append(
                    (f"{queued.salad_job_id} ({queued.key}, queue)", queued.key, str(body.get("output_url")))
                )
    for subject, key, url in urls:
        data, name = _stored(outcome, url)
        job = by_key[key]
        if data is None or name != f"{key}.mp4":
            found.append(
                Violation(subject, "succeeded job's MP4 in the store under its name", f"{url}: not found")
            )
            continue
        problem = _probe(data, job)
        if problem:
            found.append(Violation(subject, "succeeded job's MP4 decodes with the size asked", problem))
    return found


def _stored(outcome: Outcome, url: str) -> tuple[bytes | None, str]:
    """The bytes behind an output URL (B2, or a local node's folder) and the name they are under."""
    name = outcome.b2.object_name_of(url)
    if name is not None:
        return outcome.b2.read(name), name.rsplit("/", 1)[-1]
    parts = urlsplit(url)
    path: Path | None = None
    if parts.scheme == "file":  # the buffer container's local disk
        path = Path(unquote(parts.path))
    for node in outcome.nodes:
        if "OUTPUT_DIR" in node.env and parts.port == node.port and parts.path.startswith("/outputs/"):
            path = Path(node.env["OUTPUT_DIR"]) / unquote(parts.path.removeprefix("/outputs/"))
    if path is None:
        return None, ""
    return (path.read_bytes() if path.is_file() else None), path.name


def _probe(data: bytes, job: PlannedJob) -> str | None:
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            size = (stream.codec_context.width, stream.codec_context.height)
    except Exception as error:  # anything PyAV raises is a video that does not decode
        return f"does not decode: {type(error).__name__}: {error}"
    if size != (job.width, job.height) or frames != job.frames:
        return f"{size[0]}x{size[1]}x{frames}, asked {job.width}x{job.height}x{job.frames}"
    return None


def _check_leftovers(outcome: Outcome) -> list[Violation]:
    """After the last restart and flush: nothing in an outbox or journal, no temporary file."""
    found = []
    for worker in outcome.fleet.ids:
        state = outcome.fleet.state_dir(worker)
        for path in sorted(state.glob("status-outbox/*")) + sorted(state.glob("claim-journal/*")):
            found.append(
                Violation(
                    f"{worker}: {path.relative_to(state)}",
                    "no status lost (outbox and journal empty)",
                    "left after the last restart",
                )
            )
    for folder in outcome.local_outputs:
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.name.startswith(".") or (path.suffix == ".json" and not path.with_suffix("").exists()):
                found.append(
                    Violation(str(path), "no temporary file or half-written output", "left in OUTPUT_DIR")
                )
    for folder in sorted(outcome.temp_root.glob("fastwan-encode-*/worker-*")):
        found.append(
            Violation(str(folder), "no temporary file or half-written output", "an encoder folder left")
        )
    return found


# -- the processes --------------------------------------------------------------------------------


def _rss_lives(outcome: Outcome) -> list[RssLife]:
    """Each worker process's memory after its first job, half-way, and at its end."""
    found = []
    orch = outcome.orch
    claims = {job_id: orch.claims_of(job_id) for job_id in orch.job_ids()}
    ended: list[tuple[str, float, float]] = []  # (worker, claimed at, ended at): the jobs it ran
    for r in orch.requests(Endpoint.STATUS):
        body = r.body if isinstance(r.body, dict) else {}
        if r.answered_ok and body.get("status") in _FINAL:
            worker = body.get("worker_id")
            mine = [c for c in claims.get(r.ident or "", []) if c.worker_id == worker and c.at <= r.at]
            if mine:
                ended.append((mine[-1].worker_id, mine[-1].at, r.at))
    for life in outcome.fleet.lives:
        # An orphan of the life before, reported at start, is not a job this life ran.
        ends = [at for worker, claimed, at in ended if worker == life.worker and _within(life, claimed)]
        found += _life_rss(outcome.rss, f"{life.worker} (pid {life.pid})", life, ends)
    attempts = outcome.salad.attempts()
    for node in outcome.nodes:
        for life in node.lives:
            ends = [a.ended for a in attempts if a.node == node.name and _ran(a) and _within(life, a.ended)]
            found += _life_rss(outcome.rss, f"chaos-{node.name} (pid {life.pid})", life, ends)
    return found


def _ran(attempt: Attempt) -> bool:
    """Whether the node ran the attempt's job: its answer names the job (a 429 or a 503 before
    the model is ready refuses it unread, without its id)."""
    body = attempt.output()
    return isinstance(body, dict) and bool(body.get("musetalk_job_id"))


def _life_rss(rss: RssMonitor, name: str, life: Life, ends: list[float]) -> list[RssLife]:
    if not ends:
        return []
    ends = sorted(ends)
    first, last = rss.at(life.pid, ends[0]), rss.tail(life.pid)
    middle = rss.around(life.pid, ends[len(ends) // 2]) if len(ends) >= LONG_LIFE_JOBS else None
    return [] if first is None or last is None else [RssLife(name, first, middle, last, len(ends))]


def _within(life: Life, at: float) -> bool:
    return life.started <= at and (life.ended is None or at <= life.ended)


def _check_heartbeats(outcome: Outcome) -> tuple[list[Violation], float]:
    """The heartbeat gaps of every buffer worker life, and the largest gap not excused."""
    windows = outcome.injector.windows
    found = []
    largest = 0.0
    beats = outcome.orch.requests(Endpoint.HEARTBEAT)
    claims = outcome.orch.requests(Endpoint.CLAIM)
    for life in outcome.fleet.lives:
        arrivals = [r.at for r in beats if r.ident == life.worker and _within(life, r.at)]
        first_claim = next(
            (
                r.at
                for r in claims
                if isinstance(r.body, dict) and r.body.get("worker_id") == life.worker and _within(life, r.at)
            ),
            None,
        )

        def excused(before: float, after: float, first_claim: float | None = first_claim) -> bool:
            starting = first_claim is None or before < first_claim
            return starting or any(start <= after and before <= end for start, end in windows)

        found += check_heartbeat_gaps(
            f"{life.worker} (pid {life.pid})",
            arrivals,
            interval_s=outcome.heartbeat_interval_s,
            excused=excused,
        )
        gaps = [b - a for a, b in itertools.pairwise(arrivals[1:]) if not excused(a, b)]
        largest = max([largest, *gaps])
    return found, largest


# -- the report -------------------------------------------------------------------------------------


def last_line(outcome: Outcome, verdict: Verdict) -> str:
    """The run's last line, alone (its format is the issue's; tests/chaos parses it)."""
    injector = outcome.injector
    faults, kills = sum(injector.applied.values()), sum(injector.kills.values())
    lost, contradictions = len(verdict.lost), len(verdict.contradictions)
    other = len(verdict.violations) - lost - contradictions
    reruns = sum(verdict.reruns.values())
    done = len(outcome.planned) - lost
    rate = done / (outcome.seconds / 60) if outcome.seconds > 0 else 0.0
    growth = max(verdict.rss_growth_mib, default=0.0)
    k = outcome.workers
    return (
        f"chaos: seed {outcome.seed}, {len(outcome.planned)} jobs, {k}+{k} workers, {faults} faults, "
        f"{kills} kills: lost {lost}, contradictions {contradictions}, re-runs {reruns}, "
        f"other violations {other}, completed {done}, {rate:.1f} jobs/min, RSS growth max {growth:.0f} MiB"
    )


def render(outcome: Outcome, verdict: Verdict) -> str:
    injector = outcome.injector
    restarts = sum(1 for _ in outcome.fleet.lives) - outcome.workers * outcome.fleet.starts
    node_restarts = sum(len(node.lives) - 1 for node in outcome.nodes)
    late = _late_delays(outcome)
    growth = verdict.rss_growth_mib
    lines = [
        f"## chaos run, seed {outcome.seed}",
        "",
        f"Stores: buffer container {_store(outcome.fleet.env)}; queue nodes "
        + ", ".join(f"{node.name} {_store(node.env)}" for node in outcome.nodes)
        + ".",
        "",
        "| what | count |",
        "|---|---|",
        f"| jobs (buffer + queue) | {len(verdict.buffer)} + {len(verdict.queue)} |",
        *(f"| ended {word} | {count} |" for word, count in sorted(verdict.ends.items())),
        f"| faults | {sum(injector.applied.values())} |",
        *(f"| - {kind} | {count} |" for kind, count in sorted(injector.applied.items())),
        f"| kills (SIGKILL, SIGTERM), by what the worker was doing | {sum(injector.kills.values())} |",
        *(f"| - {phase} | {count} |" for phase, count in sorted(injector.kills.items())),
        f"| buffer workers restarted by the supervisor | {restarts} |",
        f"| - late (12-20 s) | {len(late)}" + (f", {min(late):.1f}-{max(late):.1f} s |" if late else " |"),
        f"| buffer container restarts | {outcome.fleet.starts - 1} |",
        f"| queue nodes restarted | {node_restarts} |",
        f"| cancels sent mid-job (of those planned) | {len(outcome.cancelled)} "
        f"(of {len([job for job in outcome.planned if job.cancel])}) |",
        f"| re-runs | {sum(verdict.reruns.values())} |",
        *(f"| - after {cause} | {count} |" for cause, count in sorted(verdict.reruns.items())),
        f"| lost | {len(verdict.lost)} |",
        f"| contradictions | {len(verdict.contradictions)} |",
        f"| other violations | {len(verdict.violations) - len(verdict.lost) - len(verdict.contradictions)} |",
        f"| largest heartbeat gap (start-ups and heartbeat faults aside) | {verdict.heartbeat_gap_s:.2f} s "
        f"(interval {outcome.heartbeat_interval_s:g} s) |",
        f"| time for the jobs | {outcome.seconds:.0f} s |",
        f"| throughput | {len(outcome.planned) / (outcome.seconds / 60):.1f} jobs/min |",
        "| RSS growth after the first job (lives with 2+ jobs) | "
        + (
            f"median {statistics.median(growth):.0f} MiB, max {max(growth):.0f} MiB ({len(growth)} lives) |"
            if growth
            else "- |"
        ),
        f"| RSS growth over the second half of a life of {LONG_LIFE_JOBS}+ jobs (reported, not judged) | "
        + (f"{verdict.second_half_mib:.0f} MiB |" if verdict.second_half_mib is not None else "- |"),
    ]
    if verdict.violations:
        lines += ["", "Violations:"] + [f"- {violation}" for violation in verdict.violations]
    return "\n".join(lines)


def _store(env: dict[str, str]) -> str:
    return "local disk" if "OUTPUT_DIR" in env else "B2 (simulator)"


def _late_delays(outcome: Outcome) -> list[float]:
    """Seconds from each late restart's SIGKILL to its worker running again."""
    delays = []
    for worker, killed, start in outcome.injector.late_restarts:
        started = [  # a restart by the same container (a container stopped meanwhile restarts all)
            life.started
            for life in outcome.fleet.lives
            if life.worker == worker and life.started > killed and life.supervisor == start
        ]
        if started:
            delays.append(min(started) - killed)
    return delays


def write_records(outcome: Outcome, folder: Path) -> None:
    """Beside the run (kept with ``--keep``): the faults as applied and every memory sample."""
    (folder / "faults.txt").write_text("\n".join(outcome.injector.timeline) + "\n")
    names = {life.pid: life.worker for life in outcome.fleet.lives}
    names |= {life.pid: life.worker for node in outcome.nodes for life in node.lives}
    rows = [
        f"{names.get(pid, '?')}\t{pid}\t{at:.2f}\t{rss:.1f}"
        for pid, samples in outcome.rss.samples.items()
        for at, rss in samples
    ]
    (folder / "rss.tsv").write_text("worker\tpid\tat\trss_mib\n" + "\n".join(rows) + "\n")
