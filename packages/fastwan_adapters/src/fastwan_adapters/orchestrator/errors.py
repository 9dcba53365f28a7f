"""How a call to the orchestrator can fail, one class per decision the caller has to make.

The classes follow the contract's answer classes rather than HTTP's: "try again later"
(:class:`OrchestratorUnavailable`), "the key is wrong" (:class:`OrchestratorAuthError`), "this
request will never be accepted" (:class:`OrchestratorRejected`). Messages name the endpoint's
path and the answer, never the key, the base URL's credentials or a response body.
"""

from __future__ import annotations

__all__ = [
    "DeliveryInterrupted",
    "OrchestratorAuthError",
    "OrchestratorError",
    "OrchestratorRejected",
    "OrchestratorUnavailable",
    "RequestNotBuilt",
]


class OrchestratorError(Exception):
    """Any failed call to the orchestrator.

    Attributes:
        path: the endpoint's path, e.g. ``/internal/buffer/jobs/claim``.
        status_code: the HTTP status, or ``None`` when no answer came (timeout, refused, dropped).
    """

    def __init__(self, message: str, *, path: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.status_code = status_code


class OrchestratorUnavailable(OrchestratorError):
    """A 5xx, 408 or 429, a timeout, a refused or dropped connection, or an unreadable answer:
    the same request may succeed later."""


class OrchestratorAuthError(OrchestratorError):
    """A 401 or 403: ``INTERNAL_API_KEY`` is wrong. Retrying soon will not help; backing off
    and retrying later lets a fixed orchestrator (or a rotated key) recover the worker."""


class OrchestratorRejected(OrchestratorError):
    """Any other 4xx: the orchestrator read the request and refuses it; the same body will be
    refused again."""


class RequestNotBuilt(OrchestratorRejected):
    """The request could not even be built (an id too long for a URL, a body that is not JSON):
    nothing was sent, and the same request never can be. Never retried."""


class DeliveryInterrupted(OrchestratorError):
    """The stop event was set while waiting to retry; the request was not recorded."""
