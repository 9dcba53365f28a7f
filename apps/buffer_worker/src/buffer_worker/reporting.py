"""A job's one terminal status: into the outbox the moment the job ends, then sent.

The status is written to the outbox (and the claim journal let go) before anything waits on
the orchestrator, ``running`` included: a worker killed while ``running`` is still being
retried then reports the job as it ended at its next start, not ``worker_shutdown``. Only
then does ``running`` get its last chance (``RunningAnnouncer.settle``), and the status is sent.
A 404/409 to ``running`` meanwhile means the job is not ours: the status is removed unsent.
"""

from __future__ import annotations

import logging
from typing import Final

from buffer_worker.board import JobTicket, StopReason, WorkerBoard
from buffer_worker.metrics import WorkerMetrics
from buffer_worker.recent import RecentResults
from buffer_worker.running import RunningAnnouncer
from fastwan_adapters.orchestrator import (
    ClaimJournal,
    DeliveryInterrupted,
    OrchestratorClient,
    OrchestratorError,
    PendingStatus,
    StatusOutbox,
    StatusOutcome,
    StopSignal,
    status_body,
)
from fastwan_core import JobResult
from fastwan_core.ports import Clock, ProgressReporter

__all__ = ["RUNNING_AFTER_END_S", "TerminalReports"]

log = logging.getLogger("buffer_worker.worker")

#: How long a finished job's terminal status waits for its ``running`` to be taken.
RUNNING_AFTER_END_S: Final = 10.0


class TerminalReports:
    """Ends jobs: the board, the metrics, the outbox, the orchestrator, the recent results."""

    def __init__(
        self,
        *,
        client: OrchestratorClient,
        outbox: StatusOutbox,
        journal: ClaimJournal,
        board: WorkerBoard,
        progress: ProgressReporter,
        metrics: WorkerMetrics,
        clock: Clock,
        worker_id: str,
        running_after_end_s: float = RUNNING_AFTER_END_S,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._journal = journal
        self._board = board
        self._progress = progress
        self._metrics = metrics
        self._clock = clock
        self._worker_id = worker_id
        self._running_after_end_s = running_after_end_s
        self.recent = RecentResults()

    def report(
        self,
        ticket: JobTicket,
        final: JobResult,
        *,
        replaced: bool,
        window: StopSignal,
        announcer: RunningAnnouncer | None = None,
    ) -> None:
        """Report ``final`` as the job's end; ``replaced``: the core's final progress was not it."""
        if replaced and ticket.job_id is not None:
            # The core's final progress was held back by the board; this one replaces it.
            self._board.silence(ticket.job_id)
            self._progress.report(ticket.job_id, final.progress_update(self._worker_id))
        self._board.record(ticket, final)
        self._metrics.job_ended(final, self._clock.now() - ticket.started)
        code = final.error_code.value if final.error_code is not None else "-"
        log.info("buffer job %s ended %s (%s)", ticket.buffer_job_id, final.status.value, code)
        self.recent.remember(ticket.buffer_job_id, ticket.job_id, final)
        body = status_body(final, self._worker_id)
        try:
            entry: PendingStatus | None = self._outbox.put(ticket.buffer_job_id, body)
            self._journal.forget(ticket.buffer_job_id)  # the outbox answers for the job from here
        except OSError as error:  # the outbox cannot write: send it anyway, without the safety net
            log.error(
                "outbox unavailable (%s); the status of buffer job %s goes directly",
                error,
                ticket.buffer_job_id,
            )
            entry = None
        if announcer is not None:
            announcer.settle(self._running_after_end_s)
            if ticket.reason is StopReason.LEASE_LOST:
                log.warning("buffer job %s is no longer ours: its status is dropped", ticket.buffer_job_id)
                if entry is not None:
                    self._outbox.discard(entry)
                self._journal.forget(ticket.buffer_job_id)
                self._metrics.leases_lost.inc()
                return
        self._send(ticket.buffer_job_id, entry, body, window)

    def report_again(self, ticket: JobTicket, recorded: JobResult, window: StopSignal) -> None:
        """A job claimed again after it ended here: its recorded end, sent again, not re-run."""
        log.warning(
            "buffer job %s was claimed again after it ended here %s: reporting that again, not running it",
            ticket.buffer_job_id,
            recorded.status.value,
        )
        if ticket.job_id is not None:
            self._progress.report(ticket.job_id, recorded.progress_update(self._worker_id))
        body = status_body(recorded, self._worker_id)
        try:
            entry: PendingStatus | None = self._outbox.put(ticket.buffer_job_id, body)
        except OSError as error:
            log.error(
                "outbox unavailable (%s); the status of buffer job %s goes directly",
                error,
                ticket.buffer_job_id,
            )
            entry = None
        self._send(ticket.buffer_job_id, entry, body, window)

    def _send(
        self, buffer_job_id: str, entry: PendingStatus | None, body: dict[str, object], window: StopSignal
    ) -> None:
        try:
            if entry is not None:
                outcome = self._outbox.send(self._client, entry, stop=window)
            else:
                outcome = self._client.post_status(buffer_job_id, body, stop=window)
                self._journal.forget(buffer_job_id)
        except DeliveryInterrupted:
            if entry is not None:
                log.warning(
                    "the status of buffer job %s stays in the outbox (%s); it is sent at the next start",
                    buffer_job_id,
                    self._outbox.directory,
                )
            else:  # still in the claim journal (if that can be written): the next start reports it
                log.error("the status of buffer job %s is not sent: the worker is leaving", buffer_job_id)
            return
        except OrchestratorError as failure:
            log.error("the status of buffer job %s is not sent: %s", buffer_job_id, failure)
            return
        if outcome is StatusOutcome.GONE:
            self._metrics.leases_lost.inc()
