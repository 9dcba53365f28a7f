"""The request body of ``POST /generate``: bounded and decoded.

Validation of the job itself stays in the core (``parse_job``): the route takes the raw JSON
so that every rule and message lives in one place. What is left here is the transport's part:
a body that is not declared JSON, too large to be a job, too slow to arrive, or not JSON at all.

The declared type is checked because a browser may send a cross-origin POST without asking
first only as ``text/plain``, form or multipart ("simple" requests): requiring
``application/json`` makes any web page that a user of the worker's network opens unable to
start a job.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Final

from starlette.requests import Request

__all__ = [
    "MAX_BODY_BYTES",
    "BodyTimeout",
    "BodyTooLarge",
    "InvalidBody",
    "NotJson",
    "check_declared",
    "decode_job",
    "read_body",
    "safe_header",
]

#: The core accepts an inline image of up to 28 M base64 characters; the rest of a job is small.
MAX_BODY_BYTES: Final = 32 * 1024 * 1024
_HEADER_VALUE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_JSON: Final = "application/json"


class BodyTooLarge(Exception):
    """The body is over :data:`MAX_BODY_BYTES`."""


class NotJson(Exception):
    """The request does not declare ``Content-Type: application/json``; the message says what it sent."""


class BodyTimeout(Exception):
    """The whole body did not arrive in time."""


class InvalidBody(ValueError):
    """The body is not a JSON document; the message says where it breaks."""


def check_declared(request: Request, limit: int = MAX_BODY_BYTES) -> None:
    """Refuse, from the headers alone, a body declared too large or not declared JSON.

    Raises:
        BodyTooLarge: ``Content-Length`` is over ``limit``.
        NotJson: ``Content-Type`` is missing or is not ``application/json`` (parameters such
            as ``charset`` are allowed).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body must be at most {limit} bytes, got {declared}")
    content_type = request.headers.get("content-type")
    if content_type is None or content_type.split(";", 1)[0].strip().lower() != _JSON:
        shown = "none" if content_type is None else repr(content_type[:60])
        raise NotJson(f"the body must be sent with Content-Type: {_JSON}, got {shown}")


async def read_body(request: Request, *, timeout_s: float, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, within ``timeout_s`` in all, refused as soon as it passes ``limit``
    bytes (never held whole if larger, whatever ``Content-Length`` said).

    Raises:
        BodyTooLarge: over ``limit`` bytes.
        BodyTimeout: not all there after ``timeout_s`` seconds (a client that stalls or drips).
        starlette.requests.ClientDisconnect: the client left first.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(f"the body must be at most {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(
            f"the body did not arrive within {timeout_s:g} s (BODY_TIMEOUT_S); got {size} bytes"
        ) from None
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


def safe_header(value: str | None) -> str | None:
    """A header value fit for a log line (Salad's job id is a UUID), or ``None``."""
    if value is None or not _HEADER_VALUE.fullmatch(value):
        return None
    return value
