"""SaladCloud's instance deletion cost: a busy node asks not to be the one removed at scale-in.

When Salad scales a container group in (a lower replica count, a job-queue autoscaler), it
removes the instances with the lowest deletion cost first (0 by default) and pays no attention
to whether they are running a job. So while a job runs, the worker sets its cost through the
node's Instance Metadata Service (``PUT {SALAD_IMDS_URL}/v1/deletion-cost``, header
``Metadata: true``, body ``{"deletion_cost": N}``; IMDS is ``http://169.254.169.254`` on port
80 and must be reached without a proxy), and sets it back to 0 when idle.

Best effort by design: the calls go out in order from a task of the worker's event loop, each
with a short timeout, so a slow or absent IMDS never delays a job; a failure is logged once (until
the next success) and changes nothing else. The calls work on the loop the object is opened on
(``async with``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

import httpx

__all__ = ["BUSY_DELETION_COST", "DEFAULT_IMDS_URL", "DeletionCost"]

log = logging.getLogger(__name__)

DEFAULT_IMDS_URL: Final = "http://169.254.169.254"
#: Any value above the idle nodes' 0 puts a busy node behind them; Salad documents 100 as its example.
BUSY_DELETION_COST: Final = 100
_TIMEOUT_S: Final = 2.0


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
        self._http = httpx.AsyncClient(timeout=timeout_s, trust_env=False, headers={"Metadata": "true"})
        self._pending: asyncio.Queue[int] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._failing = False

    @classmethod
    def on_salad(cls, imds_url: str | None) -> DeletionCost | None:
        """The node's deletion cost on SaladCloud (``imds_url`` set, ``SALAD_MACHINE_ID`` seen);
        ``None`` anywhere else."""
        return None if imds_url is None else cls(imds_url)

    async def __aenter__(self) -> DeletionCost:
        self._sender = asyncio.get_running_loop().create_task(self._send_pending())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    def busy(self) -> None:
        """A job started (on the event loop; never waits)."""
        self._pending.put_nowait(self._busy_cost)

    def idle(self) -> None:
        """The job ended (on the event loop; never waits)."""
        self._pending.put_nowait(0)

    async def aclose(self, timeout: float = 1.0) -> None:
        """Send what is queued within ``timeout``, then close the connection pool."""
        if self._sender is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._pending.join()
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        await self._http.aclose()

    async def _send_pending(self) -> None:
        while True:
            cost = await self._pending.get()
            try:
                await self._put(cost)
            finally:
                self._pending.task_done()

    async def _put(self, cost: int) -> None:
        try:
            response = await self._http.put(self._url, json={"deletion_cost": cost})
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
        except Exception:  # best effort: nothing here may end the sender
            log.exception("setting the SaladCloud deletion cost failed")
            return
        if self._failing:
            self._failing = False
            log.info("SaladCloud IMDS takes the deletion cost again")
        log.debug("SaladCloud deletion cost set to %d", cost)
