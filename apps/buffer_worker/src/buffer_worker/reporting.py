"""A job's one terminal status: into the outbox the moment the job ends, then sent.

Every way a claimed job ends comes here (``StatusDelivery``): the claim loop's, the main
thread's on a second signal, a job claimed again after it ended here. The status is written to
the outbox (and the claim journal let go) before anything waits on the orchestrator, ``running``
included: a worker killed while ``running`` is still being retried then reports the job as it
ended at its next start, not ``worker_shutdown``. Only then does ``running`` get its last chance
(``RunningAnnouncer.settle``), and the status is sent. A 404/409 to ``running`` meanwhile means
the job is not ours: the status is removed unsent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from buffer_worker.board import JobTicket, StopReason, WorkerBoard
from buffer_worker.control import StopControl
from buffer_worker.metrics import WorkerMetrics
from buffer_worker.outcomes import final_result
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
from fastwan_core import JobResult, Metrics, WorkerInfo
from fastwan_core.ports import Clock, ProgressReporter

__all__ = ["RUNNING_AFTER_END_S", "StatusDelivery"]

log = logging.getLogger("buffer_worker.worker")

#: How long a finished job's terminal status waits for its ``running`` to be taken.
RUNNING_AFTER_END_S: Final = 10.0


class StatusDelivery:
    """Ends jobs: the final result, the board, the metrics, the outbox, the claim journal, the
    orchestrator, the recent results.

    Args:
        running_after_end_s: how long a finished job's status waits for its ``running``.
    """

    def __init__(
        self,
        *,
        client: OrchestratorClient,
        outbox: StatusOutbox,
        journal: ClaimJournal,
        board: WorkerBoard,
        control: StopControl,
        progress: ProgressReporter,
        metrics: WorkerMetrics,
        clock: Clock,
        worker: WorkerInfo,
        running_after_end_s: float = RUNNING_AFTER_END_S,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._journal = journal
        self._board = board
        self._control = control
        self._progress = progress
        self._metrics = metrics
        self._clock = clock
        self._worker_id = worker.worker_id
        self._running_after_end_s = running_after_end_s
        self._recent = RecentResults()

    def end(
        self,
        ticket: JobTicket,
        result: JobResult | None,
        *,
        fallback_metrics: Callable[[], Metrics],
        window: StopSignal,
        announcer: RunningAnnouncer | None = None,
    ) -> JobResult | None:
        """Report the job's one terminal status: the core's ``result``, or the worker's own when
        it has none or is leaving (``outcomes.py``). ``None`` if another thread already has."""
        final = final_result(
            ticket,
            result,
            leaving=self._control.leaving,
            restart_reason=self._control.restart_reason,
            fallback_metrics=fallback_metrics,
        )
        if not ticket.claim_report():
            return None
        if (result is None or final.error_code is not result.error_code) and ticket.job_id is not None:
            # The core's final progress was held back by the board; this one replaces it.
            self._board.silence(ticket.job_id)
            self._progress.report(ticket.job_id, final.progress_update(self._worker_id))
        self._board.record(ticket, final)
        self._metrics.job_ended(final, self._clock.now() - ticket.started)
        code = final.error_code.value if final.error_code is not None else "-"
        log.info("buffer job %s ended %s (%s)", ticket.buffer_job_id, final.status.value, code)
        self._recent.remember(ticket.buffer_job_id, ticket.job_id, final)
        body = status_body(final, self._worker_id)
        entry = self._put(ticket.buffer_job_id, body)
        if announcer is not None:
            announcer.settle(self._running_after_end_s)
            if ticket.reason is StopReason.LEASE_LOST:
                log.warning("buffer job %s is no longer ours: its status is dropped", ticket.buffer_job_id)
                if entry is not None:
                    self._outbox.discard(entry)
                self._let_go(ticket.buffer_job_id)
                return final
        self._send(ticket.buffer_job_id, entry, body, window)
        return final

    def drop(self, ticket: JobTicket) -> None:
        """The job is no longer ours (404/409 while it ran): nothing is reported."""
        log.warning("buffer job %s is no longer ours: dropped, nothing reported", ticket.buffer_job_id)
        self._board.silence(ticket.job_id)
        self._let_go(ticket.buffer_job_id)

    def report_again(self, ticket: JobTicket, window: StopSignal) -> bool:
        """A job claimed again after it ended here: its recorded end, sent again, not re-run.
        ``False`` if it did not end here (or ended so that a new run is how it is retried)."""
        recorded = self._recent.recall(ticket.buffer_job_id, ticket.job_id)
        if recorded is None:
            return False
        log.warning(
            "buffer job %s was claimed again after it ended here %s: reporting that again, not running it",
            ticket.buffer_job_id,
            recorded.status.value,
        )
        if ticket.job_id is not None:
            self._progress.report(ticket.job_id, recorded.progress_update(self._worker_id))
        body = status_body(recorded, self._worker_id)
        self._send(ticket.buffer_job_id, self._put(ticket.buffer_job_id, body), body, window)
        return True

    def _put(self, buffer_job_id: str, body: dict[str, object]) -> PendingStatus | None:
        """Into the outbox, which answers for the job from then on; ``None`` if it cannot be written."""
        try:
            entry = self._outbox.put(buffer_job_id, body)
        except OSError as error:  # the outbox cannot write: send it anyway, without the safety net
            log.error(
                "outbox unavailable (%s); the status of buffer job %s goes directly", error, buffer_job_id
            )
            return None
        self._journal.forget(buffer_job_id)
        return entry

    def _let_go(self, buffer_job_id: str) -> None:
        self._journal.forget(buffer_job_id)
        self._metrics.leases_lost.inc()

    def _send(
        self, buffer_job_id: str, entry: PendingStatus | None, body: dict[str, object], window: StopSignal
    ) -> None:
        """Send the status (from the outbox, or directly when it has none); a 404/409 is a lease lost."""
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
