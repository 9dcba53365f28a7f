"""SaladCloud's instance deletion cost: a busy node asks not to be the one removed at scale-in.

When Salad scales a container group in (a lower replica count, a job-queue autoscaler), it
removes the instances with the lowest deletion cost first (0 by default) and pays no attention
to whether they are running a job. So while a job runs, the worker sets its cost through the
node's Instance Metadata Service (``PUT {SALAD_IMDS_URL}/v1/deletion-cost``, header
``Metadata: true``, body ``{"deletion_cost": N}``; IMDS is ``http://169.254.169.254`` on port
80 and must be reached without a proxy), and sets it back to 0 when idle.

Best effort by design: the calls go out from a thread of their own, in order, each with a short
timeout, so a slow or absent IMDS never delays a job; a failure is logged once (until the next
success) and changes nothing else.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Final

import httpx

__all__ = ["BUSY_DELETION_COST", "DEFAULT_IMDS_URL", "DeletionCost"]

log = logging.getLogger(__name__)

DEFAULT_IMDS_URL: Final = "http://169.254.169.254"
#: Any value above the idle nodes' 0 puts a busy node behind them; Salad documents 100 as its example.
BUSY_DELETION_COST: Final = 100
_TIMEOUT_S: Final = 2.0
_STOP: Final = object()


class DeletionCost:
    """Tells IMDS this node's deletion cost: ``busy()`` while a job runs, ``idle()`` after.

    Args:
        imds_url: ``SALAD_IMDS_URL`` (tests: a loopback stand-in).
    """

    def __init__(
        self,
        imds_url: str = DEFAULT_IMDS_URL,
        *,
        busy_cost: int = BUSY_DELETION_COST,
        timeout_s: float = _TIMEOUT_S,
    ) -> None:
        self._url = f"{imds_url.rstrip('/')}/v1/deletion-cost"
        self._busy_cost = busy_cost
        # trust_env=False: no proxy from the environment, which IMDS refuses.
        self._http = httpx.Client(timeout=timeout_s, trust_env=False, headers={"Metadata": "true"})
        self._pending: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="salad-deletion-cost", daemon=True)
        self._thread.start()

    def busy(self) -> None:
        """A job started (never blocks)."""
        self._pending.put(self._busy_cost)

    def idle(self) -> None:
        """The job ended (never blocks)."""
        self._pending.put(0)

    def close(self, timeout: float = 1.0) -> None:
        """Send what is queued within ``timeout``, then close the connection pool."""
        self._pending.put(_STOP)
        self._thread.join(timeout)
        self._http.close()

    def _run(self) -> None:
        while (cost := self._pending.get()) is not _STOP:
            assert isinstance(cost, int)
            self._put(cost)

    def _put(self, cost: int) -> None:
        try:
            response = self._http.put(self._url, json={"deletion_cost": cost})
            response.raise_for_status()
        except httpx.HTTPError as error:
            if not self._failing:
                self._failing = True
                log.warning(
                    "SaladCloud IMDS did not take the deletion cost (%s: %s); jobs go on, and this "
                    "is not logged again until it works",
                    type(error).__name__,
                    error,
                )
            return
        except Exception:  # best effort: nothing here may end the thread
            log.exception("setting the SaladCloud deletion cost failed")
            return
        if self._failing:
            self._failing = False
            log.info("SaladCloud IMDS takes the deletion cost again")
        log.debug("SaladCloud deletion cost set to %d", cost)
