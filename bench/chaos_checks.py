"""The chaos run's verdict: the worker's promises, checked per job from the doubles' ledgers and the
store, after the run. Pure functions over plain records, so that each rule is tested on its own
(tests/chaos/test_checks.py) with ledgers that break it.

The promises (issue 21):

- **buffer mode**: every claim that was not taken back (lease expired, 409) ends with exactly one
  recorded terminal status, and its worker never sends two different ones for it; a job ends
  final (succeeded, cancelled, failed for good), never lost; no status is left in an outbox or
  a claim in a journal once the workers have restarted and flushed;
- **queue mode**: each job completes once, and is run again only after a retry code or a drop;
  the status code of every answer agrees with its body (200 succeeded; 4xx a failure that
  retrying cannot help; 408/429/5xx a retryable one), since Salad acts on the code alone;
- **both**: no final word is contradicted. Once the orchestrator was told a job succeeded, was
  cancelled, or failed for good (a status, or a terminal progress call), it is never told a
  different end for it (the known bug: ``failed`` progress after ``succeeded``);
- every succeeded job's MP4 is in the store under its name, decodes, and has the size and the
  frame count asked for; an invalid job ends ``invalid_input`` once and is never run again;
- no temporary file or half-written output is left; each worker's memory after its jobs stays
  within a bound of its memory after its first; heartbeats keep their cadence (gaps within
  twice the interval) except across a kill, a start, or a fault put on the heartbeat itself.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import attrs

__all__ = [
    "RETRYABLE_CODES",
    "BufferRecord",
    "ProgressCall",
    "QueueAttempt",
    "QueueRecord",
    "RssLife",
    "StatusCall",
    "Violation",
    "check_buffer_job",
    "check_final_words",
    "check_heartbeat_gaps",
    "check_queue_job",
    "check_rss",
    "rerun_causes",
    "second_half_growth",
]

#: The contract's error codes a retry can cure (the table in orchestrator.md), for progress
#: calls, which carry the code but not ``retryable``.
RETRYABLE_CODES: Final = frozenset(
    {"image_fetch_failed", "gpu_out_of_memory", "upload_failed", "worker_shutdown", "internal_error"}
)
_TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
CONTRADICTION: Final = "contradiction"


@attrs.frozen
class Violation:
    """One broken promise: the job (or file, or worker) and the rule, with what was seen."""

    subject: str
    rule: str
    detail: str

    @property
    def contradiction(self) -> bool:
        return self.rule.startswith(CONTRADICTION)

    def __str__(self) -> str:
        return f"{self.subject}: {self.rule}: {self.detail}"


@attrs.frozen
class StatusCall:
    """A status call the orchestrator received. ``answer``: its HTTP status (None: dropped)."""

    at: float
    status: str
    worker_id: str | None
    answer: int | None
    error_code: str | None = None
    retryable: bool | None = None
    output_url: str | None = None

    @property
    def recorded(self) -> bool:
        return self.answer is not None and 200 <= self.answer < 300


@attrs.frozen
class ProgressCall:
    at: float
    status: str
    worker_id: str | None = None
    error_code: str | None = None


@attrs.frozen
class ClaimView:
    """One claim of a buffer job (the orchestrator double's ``Claim``)."""

    number: int
    worker_id: str
    at: float
    status: str | None
    taken_back: str | None


@attrs.frozen
class BufferRecord:
    """What the orchestrator knows of one buffer job at the end."""

    buffer_job_id: str
    key: str
    invalid: bool
    claims: Sequence[ClaimView]
    statuses: Sequence[StatusCall]
    progress: Sequence[ProgressCall]
    final_state: str


@attrs.frozen
class QueueAttempt:
    """One attempt of a Salad job: its outcome (completed, rejected, dropped, stopped), the
    HTTP status and the answer's JSON body (None when there was none or it was not JSON)."""

    number: int
    node: str
    started: float
    ended: float
    outcome: str
    status: int | None
    body: Any


@attrs.frozen
class QueueRecord:
    salad_job_id: str
    key: str
    invalid: bool
    state: str  # pending, running, completed, failed
    attempts: Sequence[QueueAttempt]
    progress: Sequence[ProgressCall]


# -- words that end a job ---------------------------------------------------------------------


def _final(status: str, error_code: str | None, retryable: bool | None) -> bool:
    """Whether a terminal word says the job is over for good (nothing may contradict it)."""
    if status != "failed":
        return status in _TERMINAL
    if retryable is not None:
        return not retryable
    return error_code not in RETRYABLE_CODES


def check_final_words(
    subject: str, statuses: Iterable[StatusCall], progress: Iterable[ProgressCall]
) -> list[Violation]:
    """Once a final word is recorded (a status taken, or a terminal progress call), no later
    terminal word may differ from it."""
    words: list[tuple[float, str, str, bool]] = []  # (at, word, where, final)
    for call in statuses:
        if call.recorded and call.status in _TERMINAL:
            word = _word(call.status, call.error_code)
            words.append(
                (
                    call.at,
                    word,
                    f"status from {call.worker_id}",
                    _final(call.status, call.error_code, call.retryable),
                )
            )
    for update in progress:
        if update.status in _TERMINAL:
            word = _word(update.status, update.error_code)
            words.append(
                (
                    update.at,
                    word,
                    f"progress from {update.worker_id}",
                    _final(update.status, update.error_code, None),
                )
            )
    words.sort(key=lambda item: item[0])
    said: tuple[str, str] | None = None
    for _at, word, where, final in words:
        if said is not None and word != said[0]:
            return [
                Violation(
                    subject,
                    f"{CONTRADICTION}: final word contradicted",
                    f"{word} ({where}) after {said[0]} ({said[1]})",
                )
            ]
        if said is None and final:
            said = (word, where)
    return []


def _word(status: str, error_code: str | None) -> str:
    return f"{status}/{error_code}" if status == "failed" and error_code else status


# -- buffer mode ------------------------------------------------------------------------------


def check_buffer_job(record: BufferRecord, *, final_states: frozenset[str]) -> list[Violation]:
    subject = f"{record.buffer_job_id} ({record.key}, buffer)"
    found = check_final_words(subject, record.statuses, record.progress)
    for claim in record.claims:
        if claim.taken_back is None and claim.status is None and record.final_state in final_states:
            found.append(
                Violation(
                    subject,
                    "one terminal status per claim",
                    f"claim {claim.number} by {claim.worker_id} ended with none recorded",
                )
            )
        sent = {
            call.status
            for call in _sent_for(claim, record.claims, record.statuses)
            if call.status in _TERMINAL
        }
        if len(sent) > 1:
            found.append(
                Violation(
                    subject,
                    f"{CONTRADICTION}: two ends for one claim",
                    f"claim {claim.number} by {claim.worker_id} was sent {sorted(sent)}",
                )
            )
    if record.final_state not in final_states:
        found.append(
            Violation(subject, "lost", f"ended {record.final_state} after {len(record.claims)} claim(s)")
        )
    if record.invalid:
        found.extend(_invalid_once(subject, record))
    return found


def _sent_for(
    claim: ClaimView, claims: Sequence[ClaimView], statuses: Sequence[StatusCall]
) -> list[StatusCall]:
    """The status calls its worker sent while ``claim`` was that worker's latest claim of the job."""
    later = [c.at for c in claims if c.worker_id == claim.worker_id and c.at > claim.at]
    until = min(later) if later else float("inf")
    return [s for s in statuses if s.worker_id == claim.worker_id and claim.at <= s.at < until]


def _invalid_once(subject: str, record: BufferRecord) -> list[Violation]:
    ends = [(s.status, s.error_code) for s in record.statuses if s.recorded and s.status in _TERMINAL]
    if ends != [("failed", "invalid_input")]:
        return [Violation(subject, "invalid job ends invalid_input once", f"recorded {ends}")]
    decided = next(c.number for c in record.claims if c.status is not None)
    if any(c.number > decided for c in record.claims):
        return [
            Violation(
                subject,
                "invalid job never run again",
                f"claimed {len(record.claims)} times, decided at {decided}",
            )
        ]
    return []


# -- queue mode -------------------------------------------------------------------------------


def check_queue_job(record: QueueRecord) -> list[Violation]:
    subject = f"{record.salad_job_id} ({record.key}, queue)"
    found = check_final_words(subject, [], record.progress)
    completed = [a for a in record.attempts if a.outcome == "completed"]
    if record.state != "completed" or len(completed) != 1:
        causes = ", ".join(_cause(a) for a in record.attempts) or "never attempted"
        found.append(
            Violation(
                subject, "lost" if record.state != "failed" else "completes once", f"{record.state}: {causes}"
            )
        )
    for attempt in record.attempts[:-1]:
        if attempt.outcome == "completed":
            found.append(
                Violation(
                    subject,
                    "retried only after a retry code or a drop",
                    f"attempt {attempt.number} completed, yet ran again",
                )
            )
    for attempt in record.attempts:
        disagreement = _code_disagrees(attempt)
        if disagreement:
            found.append(
                Violation(
                    subject,
                    "answer code agrees with its body",
                    f"attempt {attempt.number} on {attempt.node}: {disagreement}",
                )
            )
    if record.invalid and completed:
        body = completed[0].body if isinstance(completed[0].body, dict) else {}
        if (completed[0].status, body.get("error_code")) != (422, "invalid_input"):
            found.append(
                Violation(
                    subject,
                    "invalid job ends invalid_input once",
                    f"completed {completed[0].status} {body.get('error_code')}",
                )
            )
    return found


def _code_disagrees(attempt: QueueAttempt) -> str | None:
    """Why an answer's status code and body disagree, or None. Salad acts on the code alone."""
    if attempt.status is None or not isinstance(attempt.body, dict) or "status" not in attempt.body:
        return None  # no answer, or one that is not the worker's (499's empty body)
    said, retryable = attempt.body.get("status"), attempt.body.get("retryable")
    code = attempt.status
    if code == 200:
        return None if said == "succeeded" else f"200 with status {said}"
    if code in (408, 429) or 500 <= code <= 599:
        return (
            None
            if said == "failed" and retryable is True
            else f"{code} (retry) with {said}, retryable {retryable}"
        )
    if 400 <= code <= 499:
        return (
            None
            if said in ("failed", "cancelled") and retryable is not True
            else f"{code} (final) with {said}, retryable {retryable}"
        )
    return f"unexpected status {code}"


def _cause(attempt: QueueAttempt) -> str:
    if attempt.status is None:
        return attempt.outcome
    code = attempt.body.get("error_code") if isinstance(attempt.body, dict) else None
    return f"{attempt.status}" + (f" {code}" if code else "")


def rerun_causes(buffer: Iterable[BufferRecord], queue: Iterable[QueueRecord]) -> Counter[str]:
    """Why each run after a job's first happened: how the run before it ended."""
    causes: Counter[str] = Counter()
    for record in buffer:
        for claim, statuses in zip(record.claims[:-1], _ends(record), strict=False):
            causes[claim.taken_back or statuses] += 1
    for queued in queue:
        for attempt in queued.attempts[:-1]:
            causes[_cause(attempt)] += 1
    return causes


def _ends(record: BufferRecord) -> list[str]:
    ends = []
    for claim in record.claims:
        code = next(
            (
                s.error_code
                for s in _sent_for(claim, record.claims, record.statuses)
                if s.recorded and s.status == claim.status
            ),
            None,
        )
        ends.append(f"{claim.status}/{code}" if code else str(claim.status))
    return ends


# -- the processes ----------------------------------------------------------------------------


@attrs.frozen
class RssLife:
    """One worker process's resident memory (MiB): after its first job, around the middle of its
    jobs (``None`` under ``LONG_LIFE_JOBS`` jobs), and at its end; and how many jobs it ended."""

    name: str
    first: float
    middle: float | None
    last: float
    jobs: int


#: A life with at least this many jobs also reports its growth over its second half (from its
#: 20th job on, past the warm-up: a calm run's RSS plateaus within 15-60 jobs).
LONG_LIFE_JOBS: Final = 40


def check_rss(lives: Iterable[RssLife], *, ratio: float, slack_mib: float) -> list[Violation]:
    """After its jobs, a worker's RSS stays within ``ratio`` x its RSS after the first job plus
    ``slack_mib``.

    The bound is loose on purpose: the allocator keeps the largest working set the job mix has
    needed (sizes, image-to-video, prompts), and a calm run (``--faults-per-job 0``) plateaus at
    1.5-1.65x the RSS after the first job. A leak of a few MiB a job shows over long lives
    instead, in :func:`second_half_growth`, which is reported, not judged: a calm long run once
    grew 134 MiB over a second half that no isolated run of the same mix reproduced.
    """
    return [
        Violation(
            life.name,
            "RSS within a bound of its RSS after its first job",
            f"{life.first:.0f} MiB after its first job, {life.last:.0f} MiB after {life.jobs}",
        )
        for life in lives
        if life.jobs >= 2 and life.last > life.first * ratio + slack_mib
    ]


def second_half_growth(lives: Iterable[RssLife]) -> float | None:
    """The largest growth (MiB) over the second half of a long life, or ``None`` if none was long."""
    growths = [life.last - life.middle for life in lives if life.middle is not None]
    return max(growths) if growths else None


def check_heartbeat_gaps(
    life: str, arrivals: Sequence[float], *, interval_s: float, excused: Callable[[float, float], bool]
) -> list[Violation]:
    """Gaps between one process life's heartbeats, the first excused (start-up)."""
    found = []
    for before, after in itertools.pairwise(arrivals[1:]):
        if after - before > 2 * interval_s and not excused(before, after):
            found.append(
                Violation(
                    life,
                    "heartbeat gap within twice the interval",
                    f"{after - before:.2f} s (interval {interval_s:g} s)",
                )
            )
    return found
