"""The orchestrator's HTTP API as the worker uses it: claim, heartbeat, status, progress.

One pooled ``httpx.AsyncClient`` per process, used from the worker's event loop (the claim loop,
the heartbeat, the progress sender, the statuses left from the last run). Each call follows the
contract's own retry rule (``retry.RetryPolicy``), so callers never write retry loops:

- ``claim``: one try; ``claim_with_backoff`` retries with capped, jittered backoff.
- ``heartbeat``: one try; a failure is the caller's to log, the next tick is the retry.
- ``post_status``: retries until the orchestrator records it or says the job is gone.
- ``post_progress``: one try, never raises.

Every call has an overall deadline (``fastwan_adapters.deadline``: httpx's timeouts bound each
read, not the answer), and a claim or status call is abandoned as soon as the caller's stop
event is set.

A 401/403 is logged once (naming ``INTERNAL_API_KEY``, never its value) until a call succeeds
again, however many calls fail in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

import httpx

from fastwan_adapters.config import env_str
from fastwan_adapters.orchestrator.answers import AnswerCheck, json_or_none
from fastwan_adapters.orchestrator.errors import (
    DeliveryInterrupted,
    OrchestratorAuthError,
    OrchestratorError,
    OrchestratorRejected,
    OrchestratorUnavailable,
    RequestNotBuilt,
)
from fastwan_adapters.orchestrator.messages import Heartbeat, HeartbeatAnswer, StatusOutcome
from fastwan_adapters.orchestrator.posting import post, segment
from fastwan_adapters.orchestrator.retry import RetryPolicy
from fastwan_core import ProgressUpdate, progress_to_wire

__all__ = ["API_KEY_HEADER", "DEFAULT_DEADLINE_S", "DEFAULT_TIMEOUT", "OrchestratorClient"]

log = logging.getLogger(__name__)

API_KEY_HEADER: Final = "X-Internal-API-Key"
#: The contract's budget for one call: 5 s to connect, 10 s for each read or write.
DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=5.0)
#: The most one call may take in all (``ORCHESTRATOR_CALL_DEADLINE_S``): a connect and a read.
DEFAULT_DEADLINE_S: Final = 15.0

CLAIM_PATH: Final = "/internal/buffer/jobs/claim"
_GONE: Final = frozenset({404, 409})


class OrchestratorClient:
    """The orchestrator's API, with the contract's retry rule for each call.

    Args:
        base_url: ``ORCHESTRATOR_BASE_URL``; a path prefix is kept.
        api_key: ``INTERNAL_API_KEY``, sent as ``X-Internal-API-Key`` on every request.
        timeout: httpx's, per connect and per read (tests pass a short one to see timeouts fast).
        deadline_s: ``ORCHESTRATOR_CALL_DEADLINE_S``: the most one call may take in all, however
            slowly the answer trickles in.
        transport: an ``httpx`` transport to use instead of the network (unit tests).
        retry: the retry curve (default: up to 1 s first, doubling, capped at 30 s); tests give
            it a ``sleep`` that records the waits.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("ORCHESTRATOR_BASE_URL must be an http:// or https:// URL")
        if not api_key:
            raise ValueError("INTERNAL_API_KEY must not be empty")
        if not deadline_s > 0:
            raise ValueError(f"ORCHESTRATOR_CALL_DEADLINE_S must be positive, got {deadline_s!r}")
        self._deadline_s = deadline_s
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={API_KEY_HEADER: api_key},
            timeout=timeout,
            transport=transport,
        )
        self._retry = retry or RetryPolicy()
        self._answers = AnswerCheck()

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> OrchestratorClient:
        """Build from ``ORCHESTRATOR_BASE_URL`` and ``INTERNAL_API_KEY`` (both required)."""
        base_url = env_str(env, "ORCHESTRATOR_BASE_URL", required=True) or ""
        api_key = env_str(env, "INTERNAL_API_KEY", required=True) or ""
        return cls(base_url, api_key, **options)

    @property
    def retry(self) -> RetryPolicy:
        """The retry rule of this client's calls, for callers that pace their own rounds."""
        return self._retry

    def __repr__(self) -> str:  # the default would be harmless too; this one is certain to be
        return f"OrchestratorClient(base_url={str(self._http.base_url)!r})"

    # -- claim ----------------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        *,
        gpu_class: str | None = None,
        model_id: str | None = None,
        worker_version: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> dict[str, Any] | None:
        """Ask for a job, once (abandoned if ``stop`` is set meanwhile). Returns the raw job
        object (validated later by ``fastwan_core.parse_job``, so that a bad job can still be reported)
        or ``None`` for no job.

        Raises:
            OrchestratorUnavailable: 5xx, timeout, refused, dropped, or an unreadable answer.
            OrchestratorAuthError: 401/403.
            OrchestratorRejected: another 4xx.
            DeliveryInterrupted: ``stop`` was set during the call.
        """
        body: dict[str, Any] = {"worker_id": worker_id}
        extra = {"gpu_class": gpu_class, "model_id": model_id, "worker_version": worker_version}
        body.update({key: value for key, value in extra.items() if value is not None})
        response = await self._post(CLAIM_PATH, body, stop=stop)
        self._raise_for_status(response, CLAIM_PATH)
        payload = json_or_none(response)
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

    async def claim_with_backoff(
        self,
        worker_id: str,
        *,
        stop: asyncio.Event | None = None,
        gpu_class: str | None = None,
        model_id: str | None = None,
        worker_version: str | None = None,
    ) -> dict[str, Any] | None:
        """``claim``, retried with backoff (capped at 30 s) on every failure until an answer
        comes. Returns ``None`` for no job, and also when ``stop`` is set during a backoff:
        a stopping worker claims nothing, and when it is set during a call: the claim in
        flight is abandoned. Every call starts a fresh backoff curve."""

        async def attempt() -> dict[str, Any] | None:
            return await self.claim(
                worker_id, gpu_class=gpu_class, model_id=model_id, worker_version=worker_version, stop=stop
            )

        try:
            return await self._retry.call(CLAIM_PATH, attempt, stop=stop, max_attempts=None)
        except DeliveryInterrupted:
            return None

    # -- heartbeat ------------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, beat: Heartbeat | Mapping[str, Any]) -> HeartbeatAnswer:
        """Send one heartbeat, once; the next tick is the retry.

        Raises:
            OrchestratorError: any non-2xx or no answer (the caller logs it and goes on).
        """
        path = f"/internal/buffer/workers/{segment(worker_id, 'worker_id')}/heartbeat"
        body = beat.to_wire() if isinstance(beat, Heartbeat) else dict(beat)
        response = await self._post(path, body)
        self._raise_for_status(response, path)
        return HeartbeatAnswer.from_wire(json_or_none(response))

    # -- status ---------------------------------------------------------------------------

    async def post_status(
        self,
        buffer_job_id: str,
        body: Mapping[str, Any],
        *,
        stop: asyncio.Event | None = None,
        max_attempts: int | None = None,
    ) -> StatusOutcome:
        """Send a job's status until the orchestrator takes it (``RECORDED``) or says the job
        is no longer this worker's (``GONE``, 404/409); a body it refuses with another 4xx is
        ``REJECTED`` and not retried. 5xx, timeouts, refused or dropped connections and 401/403
        are retried with backoff, without end unless ``max_attempts`` is given. A request that
        cannot be built (an empty or overlong id, a body that is not JSON) is ``REJECTED`` too,
        without a try: a failure of this one status, never of its caller.

        Raises:
            DeliveryInterrupted: ``stop`` was set during a backoff or a call (at least one try is
                made: a ``stop`` already set when it starts does not abandon the first call).
            OrchestratorUnavailable, OrchestratorAuthError: the last failure, once
                ``max_attempts`` tries have failed.
        """
        try:
            path = f"/internal/buffer/jobs/{segment(buffer_job_id, 'buffer_job_id')}/status"
        except ValueError as error:
            log.error("status not sent: %s; not retried", error)
            return StatusOutcome.REJECTED
        payload = dict(body)

        async def attempt() -> StatusOutcome:
            try:
                response = await self._post(path, payload, stop=stop)
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

        return await self._retry.call(path, attempt, stop=stop, max_attempts=max_attempts)

    # -- progress -------------------------------------------------------------------------

    async def post_progress(self, job_id: str, update: ProgressUpdate | Mapping[str, Any]) -> bool:
        """Send one progress update, once. Never raises: progress is best effort, a failure is
        logged and reported as ``False``."""
        try:
            path = f"/internal/videogen/jobs/{segment(job_id, 'job_id')}/progress"
            body = progress_to_wire(update) if isinstance(update, ProgressUpdate) else dict(update)
            response = await self._post(path, body)
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

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> OrchestratorClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # -- the one HTTP call (``posting``) and the classification of its answer ---------------

    async def _post(
        self, path: str, body: Mapping[str, Any], *, stop: asyncio.Event | None = None
    ) -> httpx.Response:
        return await post(self._http, path, body, deadline_s=self._deadline_s, stop=stop)

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        self._answers.check(response, path)
