"""The one retry of both result stores: a short, bounded retry with backoff around a write.

A store's write fails on a passing fault as often as on a lasting one: B2 answering 503 for a
few seconds (b2sdk's own five attempts do not wait between them), a local disk unusable for a
moment (a remount, a folder being moved). Failing the job at once makes the caller run it
again from the start: in queue mode Salad retries a job three times, and a node answering 500
``upload_failed`` four times in 1.2 s burned them all while its disk was unusable for 2.6 s
(issue 21, ``bench/chaos.py`` seed 8024). So each store's write is tried a few times, with
waits between, within a bound (tenacity), before the job fails ``upload_failed``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import attrs
import tenacity

from fastwan_core import JobFailure

__all__ = ["UploadRetry"]

log = logging.getLogger("fastwan_adapters.storage")

_T = TypeVar("_T")


@attrs.frozen(kw_only=True)
class UploadRetry:
    """How a store's write is retried (for B2, each attempt is a full b2sdk upload, itself up
    to five tries).

    Attributes:
        attempts: writes in all (1: no retry).
        timeout_s: no new attempt starts after this many seconds.
        wait_initial_s, wait_max_s, wait_jitter_s: exponential backoff between attempts.
        sleep: how a wait is spent (tests pass one that returns at once, or acts between tries).
    """

    attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    timeout_s: float = 120.0
    wait_initial_s: float = 1.0
    wait_max_s: float = 10.0
    wait_jitter_s: float = 1.0
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, eq=False, repr=False)

    def run(self, write: Callable[[], _T], *, transient: Callable[[BaseException], bool], what: str) -> _T:
        """``write()``, tried again while it fails with an error ``transient`` accepts, within
        the bound; the last error is raised as it came. Each retry is logged, naming ``what``."""

        def log_retry(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "%s failed (%s); attempt %d of %d in %.1f s",
                what,
                _reason(error),
                state.attempt_number + 1,
                self.attempts,
                state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient),
            stop=tenacity.stop_after_attempt(self.attempts) | tenacity.stop_after_delay(self.timeout_s),
            wait=tenacity.wait_exponential_jitter(
                multiplier=self.wait_initial_s, max=self.wait_max_s, jitter=self.wait_jitter_s
            ),
            sleep=self.sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        return retrying(write)


def _reason(error: BaseException | None) -> str:
    """What a log line says of a failed write: the job's own failure message, an OS error's
    text, else only the error's type (a b2sdk error's text may carry a URL)."""
    if isinstance(error, JobFailure):
        return error.message
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__
