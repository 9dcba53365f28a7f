"""The ``ImageLoader`` port: the job's first frame, from ``image_url`` or ``image_base64``.

An image URL is chosen by whoever submits the job, so fetching it is treated as hostile: http
and https only, every redirect followed here so each hop is checked, no private addresses
(see :mod:`fastwan_adapters.images.network`), a size cap enforced while streaming, one
deadline for the whole fetch (``fastwan_adapters.deadline.within``, as every orchestrator call
has), and content judged by its bytes. ``load`` is the port's plain call, made on the job
thread: the fetch runs there on an event loop of its own, its connections with it. Messages
describe the URL with ``ImageSource.describe()`` (scheme and host only), since image URLs are
often signed.

Errors follow the contract: network trouble, timeouts and 5xx are ``image_fetch_failed``
and retryable; a 4xx, a redirect loop or a malformed redirect is ``image_fetch_failed`` and
not retryable (except 408 and 429, which say "try later"); bytes that are not an acceptable image are
``invalid_input``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from typing import Final

import attrs
import httpcore
import httpx
from PIL import Image

from fastwan_adapters.config import env_bool
from fastwan_adapters.deadline import DeadlinePassed, within
from fastwan_adapters.images.decode import SNIFF_BYTES, decode_base64, decode_image, sniff
from fastwan_adapters.images.network import BlockedAddress, GuardedBackend
from fastwan_adapters.images.redirects import MalformedRedirect, check_location
from fastwan_core import ErrorCode, ImageSource, JobFailure

__all__ = ["HttpImageLoader", "ImageLoaderSettings"]

log = logging.getLogger(__name__)

_ACCEPT: Final = "image/png, image/jpeg, image/webp;q=0.9, */*;q=0.1"
_RETRY_LATER: Final = frozenset({408, 429})


@attrs.frozen(kw_only=True)
class ImageLoaderSettings:
    """Limits on fetching and decoding the first frame.

    Attributes:
        allow_private: fetch from loopback/private/link-local addresses too
            (``ALLOW_PRIVATE_IMAGE_URLS``); off in production.
        max_bytes: the most bytes downloaded or decoded from base64 (20 MiB).
        total_timeout_s: the whole fetch, redirects included, must end within this.
        max_redirects: redirects followed before giving up.
        max_pixels: the decompression-bomb guard, checked before decoding (40 megapixels).
        user_agent: sent with each request; some image hosts refuse an empty one.
    """

    allow_private: bool = False
    max_bytes: int = attrs.field(default=20 * 1024 * 1024, validator=attrs.validators.gt(0))
    total_timeout_s: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    max_redirects: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    max_pixels: int = attrs.field(default=40_000_000, validator=attrs.validators.gt(0))
    user_agent: str = "fastwan-worker"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ImageLoaderSettings:
        return cls(allow_private=env_bool(env, "ALLOW_PRIVATE_IMAGE_URLS", False))


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, on a connection pool that uses the guarded network backend.

    httpx has no public option for the network backend, so the pool it builds is replaced
    by an equivalent one; ``test_image_loader`` fails if that ever stops taking effect.
    """

    def __init__(self, backend: GuardedBackend, ssl_context: ssl.SSLContext) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            network_backend=backend,
            max_connections=10,
            max_keepalive_connections=2,
            keepalive_expiry=5.0,
        )


class HttpImageLoader:
    """Loads first frames; one instance per worker.

    Args:
        settings: limits; defaults to :class:`ImageLoaderSettings`'s.
        backend: the network backend (tests pass one with a fixed resolver); by default a
            :class:`GuardedBackend` honouring ``settings.allow_private``.
    """

    def __init__(
        self, settings: ImageLoaderSettings | None = None, *, backend: GuardedBackend | None = None
    ) -> None:
        self.settings = settings or ImageLoaderSettings()
        self._backend = backend or GuardedBackend(allow_private=self.settings.allow_private)
        self._ssl_context = httpx.create_ssl_context()  # built once: loading the CAs takes a while

    def load(self, source: ImageSource) -> Image.Image:
        """The first frame as an upright RGB ``PIL.Image.Image``.

        Raises:
            JobFailure: ``image_fetch_failed`` (retryable or not) or ``invalid_input``.
        """
        settings = self.settings
        if source.url is not None:
            data = asyncio.run(self._fetch(source.url))
            origin = f"image_url {source.describe()}"
        elif source.base64 is not None:
            data = decode_base64(source.base64, max_bytes=settings.max_bytes)
            origin = "image_base64"
        else:
            raise JobFailure(ErrorCode.INVALID_INPUT, "neither image_url nor image_base64 is set")
        return decode_image(data, origin=origin, max_pixels=settings.max_pixels)

    # -- fetching --------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=_GuardedTransport(self._backend, self._ssl_context),
            follow_redirects=False,
            trust_env=False,  # an environment proxy would connect for us, past the address check
            timeout=httpx.Timeout(self.settings.total_timeout_s),
            event_hooks={"response": [_check_location]},
            headers={
                "User-Agent": self.settings.user_agent,
                "Accept": _ACCEPT,
                # Images are compressed already; refusing gzip also keeps a gzip bomb out.
                "Accept-Encoding": "identity",
            },
        )

    async def _fetch(self, url: str) -> bytes:
        settings = self.settings
        shown = ImageSource(url=url).describe()
        try:
            async with self._client() as client:
                return await within(
                    self._follow(client, httpx.URL(url), shown), deadline_s=settings.total_timeout_s
                )
        except BlockedAddress as exc:
            raise JobFailure(
                ErrorCode.INVALID_INPUT,
                f"image_url {shown} refused: {exc} (set ALLOW_PRIVATE_IMAGE_URLS=1 to allow)",
            ) from None
        except MalformedRedirect as exc:
            raise JobFailure(
                ErrorCode.IMAGE_FETCH_FAILED, f"image_url {shown} redirects badly: {exc}", retryable=False
            ) from None
        except (DeadlinePassed, httpx.TimeoutException):
            raise JobFailure(
                ErrorCode.IMAGE_FETCH_FAILED,
                f"image_url {shown} did not download within {settings.total_timeout_s:g} s",
            ) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise JobFailure(
                ErrorCode.INVALID_INPUT, f"image_url {shown} is not a valid http(s) URL"
            ) from None
        except httpx.DecodingError:
            raise JobFailure(
                ErrorCode.INVALID_INPUT, f"image_url {shown} sent a body that cannot be decoded"
            ) from None
        except httpx.TransportError as exc:
            raise JobFailure(
                ErrorCode.IMAGE_FETCH_FAILED, f"image_url {shown} could not be fetched: {type(exc).__name__}"
            ) from None

    async def _follow(self, client: httpx.AsyncClient, url: httpx.URL, shown: str) -> bytes:
        for hop in range(self.settings.max_redirects + 1):
            if url.scheme not in ("http", "https"):
                raise JobFailure(
                    ErrorCode.INVALID_INPUT,
                    f"image_url {shown} redirects to a {url.scheme or 'relative'!r} URL; "
                    "only http and https are fetched",
                )
            async with client.stream("GET", url) as response:
                if response.is_redirect and response.next_request is not None:
                    log.debug("image_url %s: redirect %d (hop %d)", shown, response.status_code, hop + 1)
                    url = response.next_request.url
                    continue
                self._check_status(response, shown)
                return await self._read(response, shown)
        raise JobFailure(
            ErrorCode.IMAGE_FETCH_FAILED,
            f"image_url {shown} redirects more than {self.settings.max_redirects} times",
            retryable=False,
        )

    @staticmethod
    def _check_status(response: httpx.Response, shown: str) -> None:
        status = response.status_code
        if response.is_success:
            return
        if response.is_server_error or status in _RETRY_LATER:
            raise JobFailure(ErrorCode.IMAGE_FETCH_FAILED, f"image_url {shown} answered HTTP {status}")
        raise JobFailure(
            ErrorCode.IMAGE_FETCH_FAILED, f"image_url {shown} answered HTTP {status}", retryable=False
        )

    async def _read(self, response: httpx.Response, shown: str) -> bytes:
        """The body, streamed: stopped as soon as it is too big or plainly not an image."""
        limit = self.settings.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_big(shown, limit)
        body = bytearray()
        sniffed = False
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise _too_big(shown, limit)
            if not sniffed and len(body) >= SNIFF_BYTES:
                sniffed = True
                if sniff(bytes(body[:SNIFF_BYTES])) is None:
                    raise _not_an_image(response, shown)
        if not sniffed and sniff(bytes(body)) is None:
            raise _not_an_image(response, shown)
        return bytes(body)


async def _check_location(response: httpx.Response) -> None:
    check_location(response)  # an AsyncClient's hooks are awaited


def _too_big(shown: str, limit: int) -> JobFailure:
    return JobFailure(ErrorCode.INVALID_INPUT, f"image_url {shown} is larger than the {limit}-byte limit")


def _not_an_image(response: httpx.Response, shown: str) -> JobFailure:
    content_type = response.headers.get("Content-Type", "none")[:60]
    return JobFailure(
        ErrorCode.INVALID_INPUT,
        f"image_url {shown} is not a PNG, JPEG or WebP image (Content-Type {content_type!r})",
    )
