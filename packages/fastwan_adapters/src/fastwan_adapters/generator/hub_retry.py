"""Downloading from the Hugging Face Hub through outages of a few minutes, bounded, and stoppable.

A container that starts while the Hub is slow or down (HTTP 5xx, 429, a dropped connection, no
answer) should wait for it rather than stop: such a failure is retried in the process, with
exponential backoff, for ``FASTWAN_DOWNLOAD_RETRY_S`` seconds of wall-clock time counted from
the first failed request (a 24 GB download that breaks after 20 minutes still gets the whole
time). The bound covers everything huggingface_hub does meanwhile: its own retries inside one
of our attempts, its waits, a Hub that never answers (every request has a read deadline,
``HF_HUB_DOWNLOAD_TIMEOUT``): each attempt runs in a thread of its own, watched
(``hub_client``), and is given up on when the time is up. ``0`` is one attempt, given up on at
its first failed request. huggingface_hub resumes the files it had half-downloaded. When the
time is up the download fails with ``ModelDownloadFailed``, which the apps treat as worth a
restart; a failure that retrying cannot change (see ``hub_failures``) is a
``ModelUnavailableError`` at once. Each retry is logged with the attempt, the time since the
first failure, the wait and the reason; the bytes themselves are logged by the download's
progress class.

A stop signal (``stop``: anything with ``is_set()`` and ``wait(timeout)``, such as a
``threading.Event``) ends every wait, an attempt in flight included, within
:data:`POLL_S`, with ``StartupStopped``.

The waits come from tenacity (already the B2 store's).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Protocol, TypeVar

import attrs
import tenacity

from fastwan_adapters.config import ConfigError, env_float, env_str
from fastwan_adapters.generator.errors import ModelDownloadFailed, ModelUnavailableError, StartupStopped
from fastwan_adapters.generator.hub_failures import classify_hub_failure
from fastwan_adapters.job_runner import JobRunner

__all__ = ["NEVER_STOPPED", "POLL_S", "DownloadRetry", "StopSignal", "download_with_retry"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_DEADLINE: Final = "FASTWAN_DOWNLOAD_RETRY_S"
_INITIAL: Final = "FASTWAN_DOWNLOAD_RETRY_INITIAL_S"
_MAX_WAIT: Final = "FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S"
#: How often an attempt in flight is looked at: the longest a stop or the deadline waits.
POLL_S: Final = 0.1


class StopSignal(Protocol):
    """What can stop a start-up from outside: ``threading.Event`` is one."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class _Never:
    def is_set(self) -> bool:
        return False

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            time.sleep(timeout)
        return False


#: For callers nothing stops.
NEVER_STOPPED: Final[StopSignal] = _Never()


@attrs.frozen(kw_only=True)
class DownloadRetry:
    """How long, and how patiently, a download that keeps failing for a passing reason is retried.

    Attributes:
        deadline_s: ``FASTWAN_DOWNLOAD_RETRY_S``: no new attempt after this many seconds since
            the first failure; 0: none (the first such failure ends the start-up).
        initial_s: ``FASTWAN_DOWNLOAD_RETRY_INITIAL_S``: the first wait; each next one doubles,
            plus up to ``initial_s`` at random, so that many workers do not retry in step.
        max_wait_s: ``FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S``: the longest wait between attempts.
    """

    deadline_s: float = 600.0
    initial_s: float = 2.0
    max_wait_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DownloadRetry:
        """Raises: ConfigError naming the variable that is not a number in its range."""
        default = cls()
        deadline = _seconds(env, _DEADLINE, default.deadline_s, allow_zero=True)
        initial = _seconds(env, _INITIAL, default.initial_s, allow_zero=False)
        max_wait = _seconds(env, _MAX_WAIT, max(default.max_wait_s, initial), allow_zero=False)
        if max_wait < initial:
            raise ConfigError(f"{_MAX_WAIT} must be at least {_INITIAL} ({initial:g} s), got {max_wait:g}")
        return cls(deadline_s=deadline, initial_s=initial, max_wait_s=max_wait)


def download_with_retry(
    call: Callable[[Mapping[str, str]], T],
    *,
    variable: str,
    name: str,
    cache: Path,
    offline: bool,
    retry: DownloadRetry,
    stop: StopSignal = NEVER_STOPPED,
) -> T:
    """``call(headers)`` (a huggingface_hub download, to be given ``headers``), retried while it
    fails for a passing reason, for ``retry.deadline_s`` seconds from its first failed request.

    ``variable`` and ``name`` (``FASTWAN_MODEL`` and its value, say) and ``cache`` are for
    messages; ``offline``: downloads are off, so "not cached" is final.

    Raises:
        ModelUnavailableError: a failure retrying cannot change, with its reason.
        ModelDownloadFailed: still failing for a passing reason when ``retry`` ran out.
        StartupStopped: ``stop`` was set.
    """
    from fastwan_adapters.generator.hub_client import watched_download  # huggingface_hub: only now

    subject = f"{variable}={name!r}"
    with watched_download() as (watch, headers):

        def attempt() -> T:
            started = time.monotonic()
            try:
                return _watched_attempt(lambda: call(headers), out_of_time_in, stop, subject)
            except (_OutOfTime, StartupStopped):
                raise
            except Exception as error:
                failure = classify_hub_failure(error, offline=offline)
                if failure is None:
                    raise
                if not failure.transient:
                    raise ModelUnavailableError(
                        f"{subject} could not be downloaded to {cache}: {failure.reason}"
                    ) from None
                if not watch.failed_since(started):  # a failure no request showed (a cut-off file)
                    watch.failed(failure.reason)
                # What the failed request itself said is the more precise ("did not answer within").
                raise _Passing(watch.reason or failure.reason) from error

        def out_of_time_in(started: float) -> bool:
            """An attempt in flight is given up on once it fails too, past the deadline (a
            healthy transfer after earlier failures goes on)."""
            return watch.failing_for() > retry.deadline_s and watch.failed_since(started)

        def out_of_time(state: tenacity.RetryCallState) -> bool:
            return watch.failing_for() + (state.upcoming_sleep or 0.0) > retry.deadline_s

        def log_retry(state: tenacity.RetryCallState) -> None:
            log.warning(
                "%s: download attempt %d failed: %s; %.1f s since the first failure, retrying in %.1f s "
                "(%s=%g)",
                subject,
                state.attempt_number,
                _reason(state),
                watch.failing_for(),
                state.upcoming_sleep,
                _DEADLINE,
                retry.deadline_s,
            )

        def sleep(seconds: float) -> None:
            if stop.wait(seconds):
                raise StartupStopped(f"{subject}: the download was stopped (the worker is leaving)")

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Passing),
            stop=out_of_time,
            wait=tenacity.wait_exponential_jitter(
                multiplier=retry.initial_s, max=retry.max_wait_s, jitter=retry.initial_s
            ),
            sleep=sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except (_Passing, _OutOfTime) as error:
            attempts = retrying.statistics.get("attempt_number", 1)
            reason = error.reason if isinstance(error, _Passing) else watch.reason or "unknown"
            raise ModelDownloadFailed(
                f"{subject} could not be downloaded to {cache}: {reason}; still so after {attempts} "
                f"attempt{'s' if attempts != 1 else ''} over {watch.failing_for():.1f} s "
                f"({_DEADLINE}={retry.deadline_s:g}). Nothing is wrong with the settings: start the worker "
                "again later"
            ) from error.__cause__


def _watched_attempt(
    call: Callable[[], T], out_of_time: Callable[[float], bool], stop: StopSignal, subject: str
) -> T:
    """``call()`` in a thread of its own, given up on (left to end by itself, its requests
    refused) when ``stop`` is set or ``out_of_time(started)`` says so."""
    runner = JobRunner(name="hub-download")
    attempt = runner.submit(call)
    runner.close()  # its thread ends with the attempt
    started = time.monotonic()
    while True:
        try:
            return attempt.result(timeout=POLL_S)
        except concurrent.futures.TimeoutError:
            if stop.is_set():
                raise StartupStopped(f"{subject}: the download was stopped (the worker is leaving)") from None
            if out_of_time(started):
                raise _OutOfTime from None


class _OutOfTime(Exception):
    """The download has been failing for longer than it may, an attempt still in flight."""


class _Passing(Exception):
    """An attempt failed for a reason that may pass (tenacity retries exactly these)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(state: tenacity.RetryCallState) -> str:
    error = state.outcome.exception() if state.outcome is not None else None
    return error.reason if isinstance(error, _Passing) else "unknown"


def _seconds(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool) -> float:
    bound = "at least 0" if allow_zero else "more than 0"
    problem = f"{name} must be a finite number of seconds, {bound}, got {env_str(env, name)!r}"
    try:
        value = env_float(env, name, default)
    except ConfigError:
        raise ConfigError(problem) from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(problem)
    return value
