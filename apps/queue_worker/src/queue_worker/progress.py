"""The progress port as the queue worker gives it to the core: said only while the job's caller waits.

Salad's job-queue binary hangs up on a job only when it is being stopped (SIGTERM, with the
node) or dies. The job is then neither completed nor rejected: Salad's queue hands it out again,
maybe to another node, and the run that ends it reports its end to the orchestrator. This
worker stops its run at the next step (``JobSlot``); had it reported that run's end
(``cancelled``), the orchestrator would have heard that the job ended, then, from the other
node, that it succeeded (issue 21, found by ``bench/chaos.py``). So once its caller has gone, a
job is no longer this worker's to speak of, as a buffer job whose lease is lost
(``buffer_worker.board``): nothing more is reported for it. Its answer (499), its log line and
its metrics still say what happened.
"""

from __future__ import annotations

import logging

from fastwan_core import ProgressUpdate
from fastwan_core.ports import ProgressReporter
from queue_worker.slot import JobSlot

__all__ = ["CallerProgressReporter"]

log = logging.getLogger(__name__)


class CallerProgressReporter:
    """Hands each update to ``inner``, unless the caller of the job it is about has gone.

    Keeps the port's promise (never raises) even if ``inner`` or the slot breaks it.
    """

    def __init__(self, inner: ProgressReporter, slot: JobSlot) -> None:
        self._inner = inner
        self._slot = slot

    def report(self, job_id: str, update: ProgressUpdate) -> None:
        try:
            if self._slot.caller_left(job_id):
                log.debug("job %s: its caller has gone, its progress is not reported", job_id)
                return
            self._inner.report(job_id, update)
        except Exception:
            log.warning("progress for job %s not reported", job_id, exc_info=True)
