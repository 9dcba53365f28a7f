"""Every terminal status the worker owes: each claimed job's one status, and those the last run left.

A job's status is written to the outbox the moment the job ends (and the claim journal let go)
before anything waits on the orchestrator, ``running`` included: a worker killed while
``running`` is still being retried then reports the job as it ended at its next start, not
``worker_shutdown``. Only then does ``running`` get its last chance (``running_after_end_s``:
an orchestrator that keeps refusing ``running`` must not keep a finished job in memory), and
the status is sent. A 404/409 to ``running`` means the job is not ours: its status is removed
unsent.

A job claimed again after it ended here is reported again from its recorded result, not run
again (``_Recent``).

What an earlier run left (statuses in the outbox: the orchestrator was down; claims in the
journal: it was killed mid-job, ``recovery.py``) goes out beside this run's work, in rounds:
every status tried once per round, oldest first, a backoff between rounds, until all are taken
or the worker stops (what is left stays in the outbox for the next start). An orphan's final
progress call goes out only once its status is taken: never for a job the orchestrator says is
no longer this worker's.

A ``STATE_DIR`` that cannot be written (a full disk) takes away the net under both: while it
lasts, it is in every heartbeat's ``error`` (``trouble()``). A status that cannot be put in the
outbox is sent directly, retried until the stop deadline, then put once more; a status neither
sent nor kept is named in ``lost``, and the worker exits non-zero (the job stays in the claim
journal when that could be written, and is reported at the next start).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from typing import Final

import attrs

from buffer_worker import STARTED_AT
from buffer_worker.metrics import WorkerMetrics
from buffer_worker.recovery import OrphanProgress, report_orphans
from buffer_worker.ticket import JobTicket, StopReason
from fastwan_adapters.durable import check_writable_folder
from fastwan_adapters.logs import bind_job
from fastwan_adapters.orchestrator import (
    ClaimJournal,
    DeliveryInterrupted,
    OrchestratorClient,
    OrchestratorError,
    PendingStatus,
    StatusOutbox,
    StatusOutcome,
    running_status_body,
    status_body,
)
from fastwan_adapters.storage import StoreSettings, discard_partial_output
from fastwan_core import JobResult, JobState, WorkerInfo
from fastwan_core.ports import ProgressReporter

__all__ = ["RUNNING_AFTER_END_S", "StatusDelivery"]

log = logging.getLogger("buffer_worker.worker")
leftovers_log = logging.getLogger("buffer_worker.leftovers")  # the logger of these lines, as before

#: How long a finished job's terminal status waits for its ``running`` to be taken.
RUNNING_AFTER_END_S: Final = 10.0
_LEFTOVERS: Final = "the statuses left from the last run"
_RECENT: Final = 32  # a few hours of jobs at the least; the memory is a few KiB each


class _Recent:
    """The results of the last jobs this worker ended, by ``buffer_job_id``. An orchestrator that
    hands out a job just finished here (its status was lost, a retry raced it) would otherwise
    get the whole generation again. Only an end a new run would repeat is kept: a success, and a
    failure that is not retryable; claiming any other again is how the orchestrator retries it."""

    def __init__(self) -> None:
        self._results: OrderedDict[str, tuple[str | None, JobResult]] = OrderedDict()

    def remember(self, buffer_job_id: str, job_id: str | None, result: JobResult) -> None:
        self._results.pop(buffer_job_id, None)
        if result.status is JobState.SUCCEEDED or (result.status is JobState.FAILED and not result.retryable):
            self._results[buffer_job_id] = (job_id, result)
            while len(self._results) > _RECENT:
                self._results.popitem(last=False)

    def recall(self, buffer_job_id: str, job_id: str | None) -> JobResult | None:
        """The result to report again for this claim, if it is the same job ended here."""
        kept = self._results.get(buffer_job_id)
        return kept[1] if kept is not None and kept[0] == job_id else None


@attrs.define
class StatusDelivery:
    """Ends jobs: the metrics, the outbox, the claim journal, the orchestrator, the recent results.

    Attributes:
        progress: where a status's final progress call goes (the orchestrator's progress sender).
        storage: where the half-written videos of the last run's orphans are removed from.
        running_after_end_s: how long a finished job's status waits for its ``running``.
        first_try: set once the first leftover has been tried (or there is none).
        first_round: set once every leftover has been tried once.
        lost: the buffer job ids whose terminal status was neither sent nor kept on disk.
    """

    _client: OrchestratorClient
    _outbox: StatusOutbox
    _journal: ClaimJournal
    _progress: ProgressReporter
    _metrics: WorkerMetrics
    _worker: WorkerInfo
    _storage: StoreSettings
    _running_after_end_s: float = RUNNING_AFTER_END_S
    _recent: _Recent = attrs.field(init=False, factory=_Recent)
    _orphans: dict[str, OrphanProgress | None] = attrs.field(init=False, factory=dict)
    first_try: asyncio.Event = attrs.field(init=False, factory=asyncio.Event)
    first_round: asyncio.Event = attrs.field(init=False, factory=asyncio.Event)
    lost: list[str] = attrs.field(init=False, factory=list)
    _unwritable: str | None = attrs.field(init=False, default=None)  # why STATE_DIR cannot be written

    def trouble(self) -> str | None:
        """What the heartbeat's ``error`` must say of the worker's own state, while it lasts:
        a ``STATE_DIR`` that cannot be written (probed again each time it is asked), the
        statuses neither sent nor kept."""
        if self._unwritable is not None:
            try:
                check_writable_folder(self._outbox.directory)
            except OSError:
                pass
            else:
                log.info("STATE_DIR can be written again")
                self._unwritable = None
        said = [self._unwritable] if self._unwritable else []
        if self.lost:
            said.append(
                f"the terminal status of buffer job(s) {', '.join(self.lost)} was neither sent nor kept"
            )
        return "; ".join(said) or None

    # -- this run's jobs ----------------------------------------------------------------------

    async def admit(self, ticket: JobTicket, window: asyncio.Event) -> bool:
        """A job just claimed: ``False`` if it ended here before (its recorded end is reported
        again, it is not run again); else it is held in the claim journal until its status is in
        the outbox."""
        if await self._report_again(ticket, window):
            return False
        try:
            self._journal.record(ticket.buffer_job_id, ticket.job_id)
        except OSError as error:  # the job still runs, only without the crash net
            self._cannot_write(error)
            log.error("the claim journal cannot be written (%s): a crash now would lose the job", error)
        return True

    async def announce_running(self, ticket: JobTicket, window: asyncio.Event) -> None:
        """Send ``running`` until recorded, beside the job; a 404/409 stops the job (lease lost)."""
        try:
            outcome = await self._client.post_status(
                ticket.buffer_job_id, running_status_body(self._worker.worker_id), stop=window
            )
        except DeliveryInterrupted:
            return  # the worker is leaving: the terminal status says more
        except OrchestratorError as error:
            log.warning("`running` not sent: %s", error)
            return
        if outcome is StatusOutcome.GONE and ticket.stop(StopReason.LEASE_LOST):
            log.warning("buffer job %s: the orchestrator answered 404/409, stopping it", ticket.buffer_job_id)

    async def end(
        self,
        ticket: JobTicket,
        final: JobResult,
        *,
        replaced: bool,
        window: asyncio.Event,
        running: asyncio.Task[None] | None = None,
    ) -> None:
        """Report the job's one terminal status, ``final``. ``replaced``: it is the worker's, not
        the core's, so its final progress call goes out from here. ``window``: set, the status is
        tried once more at the most and then waits in the outbox for the next start."""
        if replaced and ticket.job_id is not None:
            self._progress.report(ticket.job_id, final.progress_update(self._worker.worker_id))
        self._metrics.job_ended(final, time.monotonic() - ticket.started)
        code = final.error_code.value if final.error_code is not None else "-"
        log.info("buffer job %s ended %s (%s)", ticket.buffer_job_id, final.status.value, code)
        self._recent.remember(ticket.buffer_job_id, ticket.job_id, final)
        body = status_body(final, self._worker.worker_id)
        entry = self._put(ticket.buffer_job_id, body)
        if running is not None:
            await self._settle(ticket, running)
            if ticket.reason is StopReason.LEASE_LOST:
                log.warning("buffer job %s is no longer ours: its status is dropped", ticket.buffer_job_id)
                if entry is not None:
                    self._outbox.discard(entry)
                self._let_go(ticket.buffer_job_id)
                return
        await self._send(ticket.buffer_job_id, entry, body, window)

    def drop(self, ticket: JobTicket) -> None:
        """The job is no longer ours (404/409 while it ran): nothing is reported."""
        log.warning("buffer job %s is no longer ours: dropped, nothing reported", ticket.buffer_job_id)
        self._let_go(ticket.buffer_job_id)

    async def _settle(self, ticket: JobTicket, running: asyncio.Task[None]) -> None:
        """The job has ended: ``running`` gets a last while to go out, then is dropped."""
        await asyncio.wait({running}, timeout=self._running_after_end_s)
        if running.done():
            return
        running.cancel()
        log.warning(
            "`running` of buffer job %s not taken within %.0f s of the job's end: dropped, the "
            "terminal status goes alone",
            ticket.buffer_job_id,
            self._running_after_end_s,
        )

    async def _report_again(self, ticket: JobTicket, window: asyncio.Event) -> bool:
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
            self._progress.report(ticket.job_id, recorded.progress_update(self._worker.worker_id))
        body = status_body(recorded, self._worker.worker_id)
        await self._send(ticket.buffer_job_id, self._put(ticket.buffer_job_id, body), body, window)
        return True

    def _put(self, buffer_job_id: str, body: dict[str, object]) -> PendingStatus | None:
        """Into the outbox, which answers for the job from then on; ``None`` if it cannot be written."""
        try:
            entry = self._outbox.put(buffer_job_id, body)
        except OSError as error:  # the outbox cannot write: send it anyway, without the safety net
            self._cannot_write(error)
            log.error(
                "outbox unavailable (%s); the status of buffer job %s goes directly", error, buffer_job_id
            )
            return None
        self._unwritable = None
        self._journal.forget(buffer_job_id)
        return entry

    def _cannot_write(self, error: OSError) -> None:
        why = error.strerror or type(error).__name__
        self._unwritable = f"STATE_DIR cannot be written ({why}): statuses are not kept across a crash"

    def _let_go(self, buffer_job_id: str) -> None:
        self._journal.forget(buffer_job_id)
        self._metrics.leases_lost.inc()

    async def _send(
        self, buffer_job_id: str, entry: PendingStatus | None, body: dict[str, object], window: asyncio.Event
    ) -> None:
        """Send the status (from the outbox, or directly when it has none, retried until the stop
        deadline); a 404/409 is a lease lost. A status with no entry that is still unsent then is
        put in the outbox once more, else it is ``lost``."""
        try:
            if entry is not None:
                outcome = await self._outbox.send(self._client, entry, stop=window)
            else:
                outcome = await self._client.post_status(buffer_job_id, body, stop=window)
                self._journal.forget(buffer_job_id)
        except (DeliveryInterrupted, OrchestratorError) as failure:
            if entry is None:
                entry = self._put(buffer_job_id, body)  # the disk may have room by now
            if entry is None:
                self.lost.append(buffer_job_id)
                log.error(
                    "the status of buffer job %s is neither sent (%s) nor kept: STATE_DIR cannot be "
                    "written; the claim journal reports the job at the next start if it holds it",
                    buffer_job_id,
                    failure,
                )
            elif isinstance(failure, DeliveryInterrupted):
                log.warning(
                    "the status of buffer job %s stays in the outbox (%s); it is sent at the next start",
                    buffer_job_id,
                    self._outbox.directory,
                )
            else:
                log.error("the status of buffer job %s is not sent: %s", buffer_job_id, failure)
            return
        if outcome is StatusOutcome.GONE:
            self._metrics.leases_lost.inc()

    # -- what the last run left ---------------------------------------------------------------

    async def send_leftovers(self, stop: asyncio.Event) -> None:
        """Report the journal's orphans, then send the outbox's leftovers in rounds until all are
        taken or ``stop`` is set. Never raises: what is not sent stays on disk."""
        try:
            self._orphans = report_orphans(
                self._journal,
                self._outbox,
                # Temp files in OUTPUT_DIR with local storage, those the dead run left (written
                # before this process started); nothing with B2 (an object appears whole).
                discard_partial_output=lambda name: discard_partial_output(
                    self._storage, name, older_than=STARTED_AT
                ),
                worker=self._worker,
            )
            left = self._outbox.pending()
            if not left:
                return
            leftovers_log.info("sending %d status(es) left from the last run", len(left))
            for round_number in itertools.count(1):
                left, last_error = await self._round(left, stop)
                if not left:
                    break
                wait = self._client.retry.wait(round_number)
                leftovers_log.warning(
                    "%d status(es) left from the last run not taken yet (last: %s); next round in %.1f s",
                    len(left),
                    last_error,
                    wait,
                )
                await self._client.retry.pause(wait, stop, _LEFTOVERS)
            leftovers_log.info("every status left from the last run is delivered")
        except DeliveryInterrupted:
            leftovers_log.warning(
                "stopped while sending %s; what is not sent stays in the outbox", _LEFTOVERS
            )
        except Exception:  # a bug here must not stop the worker: the entries stay on disk
            leftovers_log.critical("sending %s failed; they stay in the outbox", _LEFTOVERS, exc_info=True)
        finally:
            self.first_try.set()
            self.first_round.set()

    async def _round(
        self, entries: list[PendingStatus], stop: asyncio.Event
    ) -> tuple[list[PendingStatus], str]:
        """Try every status still left once; returns those still left and the last failure. A
        stopping worker still tries each (one try, as before a stop) until the first that fails."""
        left, last_error = [], ""
        for entry in entries:
            job_id = entry.body.get("musetalk_job_id")
            with bind_job(job_id if isinstance(job_id, str) else None, buffer_job_id=entry.buffer_job_id):
                try:
                    outcome = await self._outbox.send(self._client, entry, stop=stop, max_attempts=1)
                    orphan = self._orphans.pop(entry.buffer_job_id, None)
                    if orphan is not None and outcome is StatusOutcome.RECORDED:
                        self._progress.report(orphan.job_id, orphan.update)  # taken: now it may be said
                except DeliveryInterrupted:
                    raise
                except OrchestratorError as error:
                    left.append(entry)
                    last_error = str(error)
                    if stop.is_set():  # once stopped, the first failure ends the sending
                        raise DeliveryInterrupted(
                            f"stopped while sending {_LEFTOVERS}", path=_LEFTOVERS
                        ) from None
                except Exception as error:  # unsendable (the disk, a bad entry): kept on disk
                    leftovers_log.error(
                        "the status of buffer job %s left from the last run cannot be sent (%s); "
                        "it stays in %s",
                        entry.buffer_job_id,
                        type(error).__name__,
                        self._outbox.directory,
                    )
                finally:
                    self.first_try.set()
        self.first_round.set()
        return left, last_error
