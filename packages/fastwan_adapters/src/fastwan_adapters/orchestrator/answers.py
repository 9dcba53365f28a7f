"""What an orchestrator answer means: the error class of each HTTP status, and the key's state.

A 401/403 is logged once (naming ``INTERNAL_API_KEY``, never its value) until a call succeeds
again, however many calls fail in between.
"""

from __future__ import annotations

import logging
from typing import Final

import httpx

from fastwan_adapters.orchestrator.errors import (
    OrchestratorAuthError,
    OrchestratorRejected,
    OrchestratorUnavailable,
)

__all__ = ["AnswerCheck", "json_or_none"]

log = logging.getLogger("fastwan_adapters.orchestrator.client")

_AUTH: Final = frozenset({401, 403})
_RETRY_LATER: Final = frozenset({408, 429})


class AnswerCheck:
    """Classifies answers for one client (on its event loop); remembers whether the key is
    being refused."""

    def __init__(self) -> None:
        self._failing = False

    def check(self, response: httpx.Response, path: str) -> None:
        """Return on 2xx; else raise the error class of the contract's answer."""
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
        first, self._failing = not self._failing, True
        if first:
            log.error(
                "%s: set INTERNAL_API_KEY to the orchestrator's internal key; backing off and retrying",
                message,
            )

    def _auth_recovered(self) -> None:
        was_failing, self._failing = self._failing, False
        if was_failing:
            log.info("the orchestrator accepts INTERNAL_API_KEY again")


def json_or_none(response: httpx.Response) -> object:
    """The answer's JSON, or ``None`` when it has none (the callers decide what that means)."""
    try:
        return response.json()
    except ValueError:
        return None
