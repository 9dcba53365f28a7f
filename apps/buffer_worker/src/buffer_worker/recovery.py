"""At start: the jobs an earlier run of this worker died with, reported once and cleaned up.

A claim journal entry that is still there at start, without a terminal status in the outbox,
is a job the worker was killed during (SIGKILL, OOM, power cut). It is reported ``failed``,
``worker_shutdown``, retryable, through the outbox (so exactly once, even if this start is cut
short too), and what it left half-written is removed (only what is older than this process:
``OUTPUT_DIR`` may be shared, and a sibling that got the job again may be writing it now). An
entry whose status already is in the
outbox (the worker died between writing the status and forgetting the claim) is only forgotten:
the outbox sends that status.

The orphan's final progress call is not sent here but returned, to go out once its status is
taken (``leftovers.py``): by the time a worker restarts (late, after the supervisor's backoff)
its lease may have run out and another worker may have finished the job, and then the status
is answered 404/409 and nothing may be said for the job any more. Sent at once, as it was,
that progress told the orchestrator ``failed`` after the other worker's ``succeeded`` (issue 21,
found by ``bench/chaos.py``). Progress is best effort: an orphan's status still unsent when
this run stops goes out at the next start without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

import attrs

from fastwan_adapters.logs import bind_job
from fastwan_adapters.orchestrator import ClaimJournal, StatusOutbox, status_body
from fastwan_core import ErrorCode, JobResult, Metrics, ProgressUpdate, WorkerInfo

__all__ = ["RESTARTED_DURING_JOB", "OrphanProgress", "report_orphans"]

log = logging.getLogger(__name__)

RESTARTED_DURING_JOB: Final = "the worker restarted during the job; it did not finish"


@attrs.frozen
class OrphanProgress:
    """The final progress call of an orphan, for once its status is taken."""

    job_id: str
    update: ProgressUpdate


def report_orphans(
    journal: ClaimJournal,
    outbox: StatusOutbox,
    *,
    discard_partial_output: Callable[[str], None],
    worker: WorkerInfo,
) -> dict[str, OrphanProgress | None]:
    """Put a terminal status for every orphaned claim into the outbox; returns their buffer ids,
    each with the final progress call to send once its status is taken (``None``: the claim had
    no readable ``musetalk_job_id``, so there is no progress endpoint to call).

    Call before flushing the outbox, so that the flush sends them with the rest.
    """
    reported: dict[str, OrphanProgress | None] = {}
    for entry in journal.orphans():
        with bind_job(entry.musetalk_job_id, buffer_job_id=entry.buffer_job_id):
            if outbox.holds(entry.buffer_job_id):
                journal.forget(entry.buffer_job_id)
                continue
            result = JobResult.failure(
                ErrorCode.WORKER_SHUTDOWN,
                RESTARTED_DURING_JOB,
                job_id=entry.musetalk_job_id,
                retryable=True,
                metrics=Metrics(
                    duration_sec=round(max(0.0, time.time() - entry.claimed_at), 4),
                    worker_id=worker.worker_id,
                    worker_version=worker.worker_version,
                ),
            )
            log.warning(
                "buffer job %s was in hand when the worker stopped without reporting it; "
                "reporting it failed (worker_shutdown, retryable)",
                entry.buffer_job_id,
            )
            try:
                outbox.put(entry.buffer_job_id, status_body(result, worker.worker_id))
            except OSError as error:  # kept in the journal: the next start tries again
                log.error(
                    "the outbox cannot be written (%s); buffer job %s stays unreported",
                    error,
                    entry.buffer_job_id,
                )
                continue
            journal.forget(entry.buffer_job_id)
            reported[entry.buffer_job_id] = None
            if entry.musetalk_job_id is not None:
                _discard(discard_partial_output, f"{entry.musetalk_job_id}.mp4")
                update = result.progress_update(worker.worker_id)
                reported[entry.buffer_job_id] = OrphanProgress(entry.musetalk_job_id, update)
    return reported


def _discard(discard: Callable[[str], None], name: str) -> None:
    try:
        discard(name)
    except OSError as error:
        log.warning("could not remove what %s left half-written: %s", name, error.strerror or error)
