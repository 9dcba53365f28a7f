"""The request body of ``POST /generate``: bounded, decoded, and its job id read for the logs.

Validation of the job itself stays in the core (``Job.from_wire``): the route takes the raw JSON
so that every rule and message lives in one place. What is left here is the transport's part:
a body too large to be a job, or one that is not JSON at all.
"""

from __future__ import annotations

import json
import re
from typing import Final

from starlette.requests import Request

from fastwan_core import Job, JobValidationError

__all__ = [
    "MAX_BODY_BYTES",
    "BodyTooLarge",
    "InvalidBody",
    "decode_job",
    "job_id_of",
    "read_body",
    "safe_header",
]

#: The core accepts an inline image of up to 28 M base64 characters; the rest of a job is small.
MAX_BODY_BYTES: Final = 32 * 1024 * 1024
_HEADER_VALUE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class BodyTooLarge(Exception):
    """The body is over :data:`MAX_BODY_BYTES`."""


class InvalidBody(ValueError):
    """The body is not a JSON document; the message says where it breaks."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, refused as soon as it passes ``limit`` bytes (never held whole if larger)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body must be at most {limit} bytes, got {declared}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body must be at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_job(body: bytes) -> object:
    """The JSON value of ``body``; whether it is a valid job is the core's to say.

    Raises:
        InvalidBody: empty, not UTF-8, not JSON, or nested too deep to decode.
    """
    if not body.strip():
        raise InvalidBody("the body must be a JSON job object, got an empty body")
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidBody(
            f"the body must be a JSON job object: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except UnicodeDecodeError:
        raise InvalidBody("the body must be a JSON job object in UTF-8") from None
    except RecursionError:
        raise InvalidBody("the body must be a JSON job object, got one nested too deep") from None
    except ValueError as error:  # e.g. an integer over Python's 4300-digit limit
        raise InvalidBody(f"the body must be a JSON job object: {error}") from None


def job_id_of(payload: object) -> str | None:
    """The job's id if it can be read, valid job or not, for logs (the core reads it the same way)."""
    try:
        return Job.from_wire(payload).musetalk_job_id
    except JobValidationError as error:
        return error.job_id


def safe_header(value: str | None) -> str | None:
    """A header value fit for a log line (Salad's job id is a UUID), or ``None``."""
    if value is None or not _HEADER_VALUE.fullmatch(value):
        return None
    return value
