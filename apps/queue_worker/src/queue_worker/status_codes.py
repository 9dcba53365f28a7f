"""The HTTP status of each answer to ``POST /generate``: in queue mode it *is* the retry decision.

Salad's job-queue binary retries on 408, 429, any 5xx or a dropped connection, and treats every
other status as the job's final answer (contract, "Queue mode"). So the status follows the
result's ``retryable`` flag, which the core sets from the error code (and an adapter may
override): retryable failures are 5xx, every other failure a 4xx. Which 4xx or 5xx only helps
a human reading logs; the table below is the documented choice (``docs/salad.md``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

from fastwan_core import ErrorCode, JobResult, JobState

__all__ = [
    "BODY_TIMEOUT",
    "BUSY",
    "CLIENT_CLOSED_REQUEST",
    "NOT_JSON",
    "NOT_READY",
    "PAYLOAD_TOO_LARGE",
    "http_status",
]

#: nginx's "client closed request": the answer to a job cancelled because its caller left.
#: Nobody receives it (the caller is gone); it only shows in logs and metrics.
CLIENT_CLOSED_REQUEST: Final = 499
#: A second job while one runs: Salad retries it later, maybe on another node.
BUSY: Final = HTTPStatus.TOO_MANY_REQUESTS
#: Before the model is loaded and warmed up, while stopping, or after a fatal error.
NOT_READY: Final = HTTPStatus.SERVICE_UNAVAILABLE
#: A body over the size limit: the same body would be refused again.
PAYLOAD_TOO_LARGE: Final = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
#: A body not declared ``application/json``: the same request would be refused again.
NOT_JSON: Final = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
#: The body did not arrive within ``BODY_TIMEOUT_S``: the sender stalled, so Salad may send it again.
BODY_TIMEOUT: Final = HTTPStatus.REQUEST_TIMEOUT

#: The status that names each code in a human's words; the retry decision is the result's own
#: ``retryable`` (``fastwan_core.errors.retry_decision``), which only picks the class: a status
#: of the other class gives way to the plain ``500`` (retryable) or ``400`` (not).
_STATUS_OF_CODE: Final[dict[ErrorCode, int]] = {
    ErrorCode.INVALID_INPUT: HTTPStatus.UNPROCESSABLE_ENTITY,
    # The image host or the store refused for good (404, not an image): the job depended on it.
    ErrorCode.IMAGE_FETCH_FAILED: HTTPStatus.FAILED_DEPENDENCY,
    ErrorCode.UPLOAD_FAILED: HTTPStatus.FAILED_DEPENDENCY,
    ErrorCode.CANCELLED: CLIENT_CLOSED_REQUEST,
    # The node is short of memory or going away: another node may well succeed.
    ErrorCode.GPU_OUT_OF_MEMORY: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.WORKER_SHUTDOWN: HTTPStatus.SERVICE_UNAVAILABLE,
}


def http_status(result: JobResult) -> int:
    """The status code that tells Salad what to do with ``result``.

    ``200`` for success; a failure marked retryable is ``503`` (out of memory, shutting down)
    or ``500``; any other failure is ``422`` (invalid input), ``424`` (the image host or the
    store refused for good), ``499`` (cancelled) or ``400``.
    """
    if result.status is JobState.SUCCEEDED:
        return HTTPStatus.OK
    named = _STATUS_OF_CODE.get(result.error_code) if result.error_code else None
    # A failure with no flag is a bug somewhere; retrying it elsewhere is the safe side.
    if result.retryable or result.retryable is None:
        return named if named is not None and named >= 500 else HTTPStatus.INTERNAL_SERVER_ERROR
    return named if named is not None and named < 500 else HTTPStatus.BAD_REQUEST
