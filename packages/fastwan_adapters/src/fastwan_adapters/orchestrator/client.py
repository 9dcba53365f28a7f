"""The orchestrator's HTTP API as the worker uses it: claim, heartbeat, status, progress.

One pooled, synchronous ``httpx.Client`` per process: the workers call it from threads (the
claim loop, the heartbeat ticker, the progress sender), and httpx's pool is thread-safe. Each
call follows the contract's own retry rule, so callers never write retry loops:

- ``claim``: one try; ``claim_with_backoff`` retries with capped, jittered backoff.
- ``heartbeat``: one try; a failure is the caller's to log, the next tick is the retry.
- ``post_status``: retries until the orchestrator records it or says the job is gone.
- ``post_progress``: one try, never raises.

A 401/403 is logged once (naming ``INTERNAL_API_KEY``, never its value) until a call succeeds
again, however many calls fail in between.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_never,
)

from fastwan_adapters.config import env_str
from fastwan_adapters.orchestrator.backoff import Backoff, Sleep, StopSignal, pause_for
from fastwan_adapters.orchestrator.errors import (
    DeliveryInterrupted,
    OrchestratorAuthError,
    OrchestratorError,
    OrchestratorRejected,
    OrchestratorUnavailable,
    RequestNotBuilt,
)
from fastwan_adapters.orchestrator.messages import Heartbeat, HeartbeatAnswer, StatusOutcome
from fastwan_core import ProgressUpdate

__all__ = ["API_KEY_HEADER", "DEFAULT_TIMEOUT", "OrchestratorClient"]

log = logging.getLogger(__name__)

API_KEY_HEADER: Final = "X-Internal-API-Key"
#: The contract's budget for one call: 5 s to connect, 10 s for each read or write.
DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=5.0)

CLAIM_PATH: Final = "/internal/buffer/jobs/claim"
_GONE: Final = frozenset({404, 409})
_AUTH: Final = frozenset({401, 403})
_RETRY_LATER: Final = frozenset({408, 429})
_MAX_REASON_CHARS: Final = 200

_T = TypeVar("_T")


def _segment(value: str, name: str) -> str:
    """One path segment: ids are quoted so that none can change the path it is put in."""
    if not value:
        raise ValueError(f"{name} must not be empty")
    return quote(value, safe="")


class OrchestratorClient:
    """The orchestrator's API, with the contract's retry rule for each call.

    Args:
        base_url: ``ORCHESTRATOR_BASE_URL``; a path prefix is kept.
        api_key: ``INTERNAL_API_KEY``, sent as ``X-Internal-API-Key`` on every request.
        timeout: per call (tests pass a short one to see timeouts fast).
        transport: an ``httpx`` transport to use instead of the network (unit tests).
        sleep: how backoff waits are spent; default: really wait, cut short by the call's stop
            event. Tests pass a fake that records the waits.
        backoff: the retry curve (default: up to 1 s first, doubling, capped at 30 s).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("ORCHESTRATOR_BASE_URL must be an http:// or https:// URL")
        if not api_key:
            raise ValueError("INTERNAL_API_KEY must not be empty")
        self._http = httpx.Client(
            base_url=base_url,
            headers={API_KEY_HEADER: api_key},
            timeout=timeout,
            transport=transport,
        )
        self._sleep = sleep
        self._backoff = backoff or Backoff()
        self._auth_lock = threading.Lock()
        self._auth_failing = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> OrchestratorClient:
        """Build from ``ORCHESTRATOR_BASE_URL`` and ``INTERNAL_API_KEY`` (both required)."""
        base_url = env_str(env, "ORCHESTRATOR_BASE_URL", required=True) or ""
        api_key = env_str(env, "INTERNAL_API_KEY", required=True) or ""
        return cls(base_url, api_key, **options)

    def __repr__(self) -> str:  # the default would be harmless too; this one is certain to be
        return f"OrchestratorClient(base_url={str(self._http.base_url)!r})"

    # -- claim ----------------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        *,
        gpu_class: str | None = None,
        model_id: str | None = None,
        worker_version: str | None = None,
    ) -> dict[str, Any] | None:
        """Ask for a job, once. Returns the raw job object (validated later by
        ``Job.from_wire``, so that a bad job can still be reported) or ``None`` for no job.

        Raises:
            OrchestratorUnavailable: 5xx, timeout, refused, dropped, or an unreadable answer.
            OrchestratorAuthError: 401/403.
            OrchestratorRejected: another 4xx.
        """
        body: dict[str, Any] = {"worker_id": worker_id}
        extra = {"gpu_class": gpu_class, "model_id": model_id, "worker_version": worker_version}
        body.update({key: value for key, value in extra.items() if value is not None})
        response = self._post(CLAIM_PATH, body)
        self._raise_for_status(response, CLAIM_PATH)
        payload = _json_or_none(response)
        if not isinstance(payload, dict):
            raise OrchestratorUnavailable(
                f"POST {CLAIM_PATH}: the answer is not a JSON object",
                path=CLAIM_PATH,
                status_code=response.status_code,
            )
        job = payload.get("job")
        if job is None:
            if payload.get("error"):
                log.debug("claim: no job; the orchestrator says: %.200s", payload["error"])
            return None
        if not isinstance(job, dict):
            raise OrchestratorUnavailable(
                f"POST {CLAIM_PATH}: the answer's job must be an object or null, got {type(job).__name__}",
                path=CLAIM_PATH,
                status_code=response.status_code,
            )
        return job

    def claim_with_backoff(
        self,
        worker_id: str,
        *,
        stop: StopSignal | None = None,
        gpu_class: str | None = None,
        model_id: str | None = None,
        worker_version: str | None = None,
    ) -> dict[str, Any] | None:
        """``claim``, retried with backoff (capped at 30 s) on every failure until an answer
        comes. Returns ``None`` for no job, and also when ``stop`` is set during a backoff:
        a stopping worker claims nothing. Every call starts a fresh backoff curve."""

        def attempt() -> dict[str, Any] | None:
            return self.claim(
                worker_id, gpu_class=gpu_class, model_id=model_id, worker_version=worker_version
            )

        try:
            return self._retrying(CLAIM_PATH, attempt, stop=stop, max_attempts=None)
        except DeliveryInterrupted:
            return None

    # -- heartbeat ------------------------------------------------------------------------

    def heartbeat(self, worker_id: str, beat: Heartbeat | Mapping[str, Any]) -> HeartbeatAnswer:
        """Send one heartbeat, once; the next tick is the retry.

        Raises:
            OrchestratorError: any non-2xx or no answer (the caller logs it and goes on).
        """
        path = f"/internal/buffer/workers/{_segment(worker_id, 'worker_id')}/heartbeat"
        body = beat.to_wire() if isinstance(beat, Heartbeat) else dict(beat)
        response = self._post(path, body)
        self._raise_for_status(response, path)
        return HeartbeatAnswer.from_wire(_json_or_none(response))

    # -- status ---------------------------------------------------------------------------

    def post_status(
        self,
        buffer_job_id: str,
        body: Mapping[str, Any],
        *,
        stop: StopSignal | None = None,
        max_attempts: int | None = None,
    ) -> StatusOutcome:
        """Send a job's status until the orchestrator takes it (``RECORDED``) or says the job
        is no longer this worker's (``GONE``, 404/409); a body it refuses with another 4xx is
        ``REJECTED`` and not retried. 5xx, timeouts, refused or dropped connections and 401/403
        are retried with backoff, without end unless ``max_attempts`` is given. A request that
        cannot be built (an empty or overlong id, a body that is not JSON) is ``REJECTED`` too,
        without a try: a failure of this one status, never of its caller.

        Raises:
            DeliveryInterrupted: ``stop`` was set during a backoff (at least one try is made).
            OrchestratorUnavailable, OrchestratorAuthError: the last failure, once
                ``max_attempts`` tries have failed.
        """
        try:
            path = f"/internal/buffer/jobs/{_segment(buffer_job_id, 'buffer_job_id')}/status"
        except ValueError as error:
            log.error("status not sent: %s; not retried", error)
            return StatusOutcome.REJECTED
        payload = dict(body)

        def attempt() -> StatusOutcome:
            try:
                response = self._post(path, payload)
            except RequestNotBuilt as error:
                log.error("%s: not retried, it can never be sent", error)
                return StatusOutcome.REJECTED
            if response.status_code in _GONE:
                return StatusOutcome.GONE
            try:
                self._raise_for_status(response, path)
            except OrchestratorRejected as rejected:
                log.error("%s: not retried, the same body would be refused again", rejected)
                return StatusOutcome.REJECTED
            return StatusOutcome.RECORDED

        return self._retrying(path, attempt, stop=stop, max_attempts=max_attempts)

    # -- progress -------------------------------------------------------------------------

    def post_progress(self, job_id: str, update: ProgressUpdate | Mapping[str, Any]) -> bool:
        """Send one progress update, once. Never raises: progress is best effort, a failure is
        logged and reported as ``False``."""
        try:
            path = f"/internal/videogen/jobs/{_segment(job_id, 'job_id')}/progress"
            body = update.to_wire() if isinstance(update, ProgressUpdate) else dict(update)
            response = self._post(path, body)
            self._raise_for_status(response, path)
        except OrchestratorAuthError:
            return False  # already logged once, naming INTERNAL_API_KEY
        except OrchestratorError as error:
            log.warning("progress not sent: %s", error)
            return False
        except Exception as error:  # a bug here must never reach the job
            log.warning("progress for job %s not sent: %s", job_id, type(error).__name__)
            return False
        return True

    # -- life cycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OrchestratorClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the one HTTP call and the classification of its answer -----------------------------

    def _post(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        try:
            request = self._http.build_request("POST", path, json=body)
        except (httpx.InvalidURL, TypeError, ValueError) as error:
            shown = path if len(path) <= _MAX_REASON_CHARS else f"{path[:_MAX_REASON_CHARS]}..."
            raise RequestNotBuilt(
                f"POST {shown}: the request cannot be built ({type(error).__name__}: "
                f"{str(error)[:_MAX_REASON_CHARS]})",
                path=path,
            ) from None
        try:
            return self._http.send(request)
        except httpx.TimeoutException as error:
            raise OrchestratorUnavailable(
                f"POST {path}: timed out ({type(error).__name__})", path=path
            ) from None
        except httpx.TransportError as error:
            reason = str(error)[:_MAX_REASON_CHARS] or type(error).__name__
            raise OrchestratorUnavailable(f"POST {path}: no answer ({reason})", path=path) from None

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        code = response.status_code
        if 200 <= code < 300:
            self._auth_recovered()
            return
        if code in _AUTH:
            message = f"POST {path}: HTTP {code}, the orchestrator refused INTERNAL_API_KEY"
            self._auth_failed(message)
            raise OrchestratorAuthError(message, path=path, status_code=code)
        if code >= 500 or code in _RETRY_LATER:
            raise OrchestratorUnavailable(f"POST {path}: HTTP {code}", path=path, status_code=code)
        raise OrchestratorRejected(f"POST {path}: HTTP {code}", path=path, status_code=code)

    def _auth_failed(self, message: str) -> None:
        with self._auth_lock:
            first, self._auth_failing = not self._auth_failing, True
        if first:
            log.error(
                "%s: set INTERNAL_API_KEY to the orchestrator's internal key; backing off and retrying",
                message,
            )

    def _auth_recovered(self) -> None:
        with self._auth_lock:
            was_failing, self._auth_failing = self._auth_failing, False
        if was_failing:
            log.info("the orchestrator accepts INTERNAL_API_KEY again")

    def _retrying(
        self, path: str, attempt: Callable[[], _T], *, stop: StopSignal | None, max_attempts: int | None
    ) -> _T:
        retrying = Retrying(
            sleep=pause_for(path, stop, self._sleep),
            wait=self._backoff.wait_strategy(),
            retry=retry_if_exception_type(OrchestratorError) & retry_if_not_exception_type(RequestNotBuilt),
            stop=stop_never if max_attempts is None else stop_after_attempt(max_attempts),
            before_sleep=_log_retry,
            reraise=True,
        )
        return retrying(attempt)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    if isinstance(error, OrchestratorAuthError):
        log.debug("%s; retry %d in %.1f s", error, state.attempt_number, wait)
    else:
        log.warning("%s; retry %d in %.1f s", error, state.attempt_number, wait)


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
