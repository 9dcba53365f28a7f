"""At start: what an earlier run left to report, sent on a thread of its own while the worker works.

An earlier run may leave terminal statuses in the outbox (the orchestrator was down) and claims
in the journal (it was killed mid-job; ``recovery.py`` turns those into statuses, and an
orphan's final progress call goes out here only once its status is taken: never for a job that
the orchestrator says is no longer this worker's). Sending them
before anything else kept the worker offline for as long as the orchestrator refused one (no
heartbeat, no claim). So they go out here, in rounds: every status tried once per round, oldest
first, a backoff between rounds, until all are taken or the worker stops (what is left stays in
the outbox for the next start). The claim loop gives this thread a head start of at most
``HEAD_START_S`` before the first heartbeat, and claims once every leftover has been tried once:
with an orchestrator that answers, leftovers still reach it before this run's first claim.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from tenacity import RetryCallState, Retrying, retry_if_result, stop_never

from buffer_worker.recovery import OrphanProgress, report_orphans
from fastwan_adapters.logs import bind_job
from fastwan_adapters.orchestrator import (
    Backoff,
    ClaimJournal,
    DeliveryInterrupted,
    OrchestratorClient,
    OrchestratorError,
    PendingStatus,
    StatusOutbox,
    StatusOutcome,
    StopSignal,
)
from fastwan_adapters.orchestrator.backoff import pause_for
from fastwan_core import WorkerInfo
from fastwan_core.ports import ProgressReporter

__all__ = ["HEAD_START_S", "LeftoverStatuses"]

log = logging.getLogger(__name__)

#: The most the first heartbeat waits for the first leftover's first try (the order of old).
HEAD_START_S: Final = 0.5
_WHAT: Final = "the statuses left from the last run"


class LeftoverStatuses:
    """Reports the journal's orphans and sends the outbox's leftovers, in the background.

    Attributes:
        first_try: set once the first leftover has been tried (or there is none).
        first_round: set once every leftover has been tried once.
    """

    def __init__(
        self,
        journal: ClaimJournal,
        outbox: StatusOutbox,
        client: OrchestratorClient,
        *,
        progress: ProgressReporter,
        discard_partial_output: Callable[[str], None],
        worker: WorkerInfo,
        stop: StopSignal,
        backoff: Backoff,
    ) -> None:
        self._journal = journal
        self._outbox = outbox
        self._client = client
        self._progress = progress
        self._discard = discard_partial_output
        self._worker = worker
        self._stop = stop
        self._backoff = backoff
        self._left: list[PendingStatus] = []
        self._orphans: dict[str, OrphanProgress | None] = {}
        self._last_error = ""
        self.first_try = threading.Event()
        self.first_round = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leftover-statuses", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._orphans = report_orphans(
                self._journal, self._outbox, discard_partial_output=self._discard, worker=self._worker
            )
            self._left = self._outbox.pending()
            if not self._left:
                return
            log.info("sending %d status(es) left from the last run", len(self._left))
            Retrying(
                sleep=pause_for(_WHAT, self._stop, None),
                wait=self._backoff.wait_strategy(),
                retry=retry_if_result(bool),
                stop=stop_never,
                before_sleep=self._log_round,
            )(self._round)
            log.info("every status left from the last run is delivered")
        except DeliveryInterrupted:
            log.warning("stopped while sending %s; what is not sent stays in the outbox", _WHAT)
        except Exception:  # a bug here must not stop the worker: the entries stay on disk
            log.critical("sending %s failed; they stay in the outbox", _WHAT, exc_info=True)
        finally:
            self.first_try.set()
            self.first_round.set()

    def _round(self) -> list[PendingStatus]:
        """Try every status still left once; returns those still left. A stopping worker still
        tries each (one try, as before a stop) until the first that fails."""
        left = []
        for entry in self._left:
            job_id = entry.body.get("musetalk_job_id")
            with bind_job(job_id if isinstance(job_id, str) else None, buffer_job_id=entry.buffer_job_id):
                try:
                    outcome = self._outbox.send(self._client, entry, stop=self._stop, max_attempts=1)
                    self._announce(entry.buffer_job_id, outcome)
                except DeliveryInterrupted:
                    raise
                except OrchestratorError as error:
                    left.append(entry)
                    self._last_error = str(error)
                    if self._stop.is_set():  # once stopped, the first failure ends the sending
                        raise DeliveryInterrupted(f"stopped while sending {_WHAT}", path=_WHAT) from None
                except Exception as error:  # unsendable (the disk, a bad entry): kept on disk
                    log.error(
                        "the status of buffer job %s left from the last run cannot be sent (%s); "
                        "it stays in %s",
                        entry.buffer_job_id,
                        type(error).__name__,
                        self._outbox.directory,
                    )
                finally:
                    self.first_try.set()
        self.first_round.set()
        self._left = left
        return left

    def _announce(self, buffer_job_id: str, outcome: StatusOutcome) -> None:
        """An orphan's final progress call, once its status is taken; none if the job is gone."""
        orphan = self._orphans.pop(buffer_job_id, None)
        if orphan is not None and outcome is StatusOutcome.RECORDED:
            self._progress.report(orphan.job_id, orphan.update)

    def _log_round(self, state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%d status(es) left from the last run not taken yet (last: %s); next round in %.1f s",
            len(self._left),
            self._last_error,
            wait,
        )
