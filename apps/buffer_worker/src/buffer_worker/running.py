"""The ``running`` status of the job in hand, sent on a short-lived thread of its own.

A slow orchestrator never delays the GPU: the job runs while ``running`` is sent and retried.
The contract's order is ``running`` first, so when the job ends first its terminal status waits
for it, but only a while (``settle``): the terminal status is in the outbox by then, and an
orchestrator that keeps refusing ``running`` must not keep a finished job in memory (heartbeats
``busy``, no claims). Given up, ``running`` is dropped: the terminal status says more.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from buffer_worker.board import JobTicket, StopReason, WorkerBoard
from buffer_worker.control import StopControl
from fastwan_adapters.orchestrator import (
    DeliveryInterrupted,
    OrchestratorClient,
    OrchestratorError,
    StatusOutcome,
    running_status_body,
)
from fastwan_adapters.threads import daemon_thread
from fastwan_core import WorkerInfo

__all__ = ["RunningAnnouncer"]

log = logging.getLogger("buffer_worker.worker")

_GIVE_UP_JOIN_S: Final = 2.0  # a given-up call in flight is abandoned within a tenth of that


class RunningAnnouncer:
    """Sends ``running`` for ``ticket`` until recorded; a 404/409 stops the job (lease lost)."""

    def __init__(
        self,
        ticket: JobTicket,
        *,
        client: OrchestratorClient,
        control: StopControl,
        board: WorkerBoard,
        worker: WorkerInfo,
    ) -> None:
        self._ticket = ticket
        self._client = client
        self._control = control
        self._board = board
        self._worker_id = worker.worker_id
        self._given_up = threading.Event()
        # The job id bound for logging travels into the thread.
        self._thread = daemon_thread(self._announce, name=f"running-{ticket.buffer_job_id}")

    def start(self) -> None:
        self._thread.start()

    def settle(self, within_s: float) -> None:
        """The job has ended: let ``running`` go out for at most ``within_s`` more, then drop it."""
        self._thread.join(within_s)
        if not self._thread.is_alive():
            return
        self._given_up.set()
        log.warning(
            "`running` of buffer job %s not taken within %.0f s of the job's end: dropped, the "
            "terminal status goes alone",
            self._ticket.buffer_job_id,
            within_s,
        )
        self._thread.join(_GIVE_UP_JOIN_S)

    def _announce(self) -> None:
        ticket = self._ticket
        try:
            outcome = self._client.post_status(
                ticket.buffer_job_id,
                running_status_body(self._worker_id),
                stop=self._control.delivery_window(until=self._given_up),
            )
        except DeliveryInterrupted:
            return  # the worker is leaving, or the terminal status goes without it
        except OrchestratorError as error:
            log.warning("`running` not sent: %s", error)
            return
        if outcome is StatusOutcome.GONE and ticket.stop(StopReason.LEASE_LOST):
            log.warning("buffer job %s: the orchestrator answered 404/409, stopping it", ticket.buffer_job_id)
            self._board.silence(ticket.job_id)
            self._control.wake.set()
