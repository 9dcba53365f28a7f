"""Error codes of the orchestrator contract and the exceptions that carry them.

Adapters raise :class:`JobFailure` with the code that says what went wrong; the use case
turns it into a failed result. The retry decision is made once, here (:func:`retry_decision`:
the code's own flag, unless the adapter that raised knows better), and carried on the failure
and its result, so that queue mode (HTTP status), buffer mode (``retryable``) and every answer
read the same flag and can never disagree.
"""

from __future__ import annotations

import enum

__all__ = ["ErrorCode", "JobCancelled", "JobFailure", "JobValidationError", "retry_decision"]


class ErrorCode(enum.Enum):
    """Every error code of the contract; ``retryable`` says whether running again can help."""

    INVALID_INPUT = "invalid_input"
    IMAGE_FETCH_FAILED = "image_fetch_failed"
    GPU_OUT_OF_MEMORY = "gpu_out_of_memory"
    GENERATION_FAILED = "generation_failed"
    UPLOAD_FAILED = "upload_failed"
    CANCELLED = "cancelled"
    WORKER_SHUTDOWN = "worker_shutdown"
    INTERNAL_ERROR = "internal_error"

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {
        ErrorCode.IMAGE_FETCH_FAILED,
        ErrorCode.GPU_OUT_OF_MEMORY,
        ErrorCode.UPLOAD_FAILED,
        ErrorCode.WORKER_SHUTDOWN,
        ErrorCode.INTERNAL_ERROR,
    }
)


def retry_decision(code: ErrorCode, retryable: bool | None = None, *, fatal: bool = False) -> bool:
    """Whether running the job again can help: the code's own flag, unless ``retryable`` says
    otherwise (an image host answering 404 is not worth a retry, a 503 is). A ``fatal`` failure
    is always retryable: the fault is this worker's (its GPU is unusable), not the job's."""
    if fatal:
        return True
    return code.retryable if retryable is None else retryable


class JobFailure(Exception):
    """A job cannot be completed; raised by adapters, mapped to a failed result by the use case.

    Attributes:
        code: the contract's error code.
        message: human-readable, safe to send to the orchestrator (no secret, no signed URL,
            no stack trace).
        retryable: :func:`retry_decision` of the code, the adapter's override and ``fatal``.
        fatal: the worker itself is no longer usable (a CUDA error other than out-of-memory):
            the app must stop after reporting so the host restarts it.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retryable: bool | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retry_decision(code, retryable, fatal=fatal)
        self.fatal = fatal


class JobCancelled(Exception):
    """Raised at a cancellation point (between denoising steps) when the job was cancelled."""


class JobValidationError(ValueError):
    """A job that breaks the contract's rules; ``errors`` holds one message per bad field.

    The message names the field and the bad value, e.g.
    ``"width must be between 256 and 1280, got 2000"``.
    """

    def __init__(
        self, errors: list[str], job_id: str | None = None, buffer_job_id: str | None = None
    ) -> None:
        super().__init__("; ".join(errors))
        self.errors = tuple(errors)
        #: the ids, when they were readable, so the failure can still be reported
        self.job_id = job_id
        self.buffer_job_id = buffer_job_id
