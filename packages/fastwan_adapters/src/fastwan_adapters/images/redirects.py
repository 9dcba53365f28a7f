"""A redirect's ``Location`` judged before httpx follows it, so that a malformed one is final.

httpx turns a ``Location`` it cannot parse into ``RemoteProtocolError``, a transport error,
which the loader (rightly, for a dropped connection) calls retryable; and it accepts a host it
can never connect to (``http://exa mple.com`` becomes ``exa%20mple.com``), which then fails to
resolve, retryable too. Either way the image host answered, and will answer the same again:
the job depended on a host that sends a broken redirect, so it is a permanent
``image_fetch_failed``. :func:`check_location` runs as httpx's response hook, before httpx
builds the next request.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

import httpx

__all__ = ["MalformedRedirect", "check_location"]

#: What a host name may hold once httpx has IDNA-encoded it: letters, digits, '-', '_' and '.'.
_HOST_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")
_MAX_PORT: Final = 65535


class MalformedRedirect(Exception):
    """A redirect whose ``Location`` is not a URL that can be fetched; the message says why,
    without the ``Location`` itself (it may carry a signed URL's secrets)."""


def check_location(response: httpx.Response) -> None:
    """Raise :class:`MalformedRedirect` if ``response`` redirects to a malformed ``Location``."""
    if not response.has_redirect_location:
        return
    try:
        url = httpx.URL(response.headers["Location"])
    except httpx.InvalidURL:
        raise MalformedRedirect("its Location is not a valid URL") from None
    host = url.raw_host.decode("ascii", "replace")
    if host and not (_HOST_NAME.fullmatch(host) or _is_ip(host)):
        raise MalformedRedirect("its Location's host is not a valid host name")
    if url.port is not None and not 0 < url.port <= _MAX_PORT:
        raise MalformedRedirect("its Location's port is out of range")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
