"""The image fetcher's network layer: which addresses it may reach, and a hard overall deadline.

Both live below httpx, in an httpcore network backend, because that is the only place that
sees the address a connection really goes to. The backend resolves the host once, refuses it
if *any* resolved address is loopback, private, link-local, reserved, multicast or otherwise
not globally routable (cloud metadata at 169.254.169.254 among them), then connects to the
address it checked. There is no second lookup, so DNS rebinding (a name that resolves to a
public address for the check and a private one for the connection) has no window. Every hop
of a redirect opens its connection here, so every hop is checked.

The deadline: httpx's timeouts apply per socket operation, so a server dripping one byte per
second never trips a 30 s read timeout. Here every connect, TLS handshake, read and write is
given at most the time left before the deadline set by :func:`deadline`. One gap remains: the
DNS lookup itself (``getaddrinfo``) cannot be interrupted, and is bounded only by the
resolver's own timeouts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, Final

import httpcore

__all__ = ["BlockedAddress", "GuardedBackend", "Resolver", "deadline", "refusal", "system_resolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``, as strings ready for ``socket.create_connection``.
Resolver = Callable[[str, int], Sequence[str]]

_DEADLINE: Final[ContextVar[float | None]] = ContextVar("image_fetch_deadline", default=None)


class BlockedAddress(Exception):
    """The host resolves to an address the worker must not reach; the message names its kind."""

    def __init__(self, host: str, kind: str) -> None:
        super().__init__(f"host {host} resolves to a {kind} address")
        self.host = host
        self.kind = kind


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be fetched from (``"loopback"``, ``"private"``...), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1 and 6to4's 2002:7f00:1:: reach 127.0.0.1: judge the IPv4 inside.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            address = embedded
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),  # before private: Python counts 240/4 as both
        ("private", address.is_private),
        ("non-global", not address.is_global),
    )
    return next((kind for kind, matches in checks if matches), None)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for a TCP connection, in its order, deduplicated."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound every network operation of the guarded backend, in this context, to ``seconds`` in all."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _clamp(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """The time an operation may take: its own timeout, cut to what is left of the deadline."""
    end = _DEADLINE.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise expired("the overall deadline passed")
    return left if timeout is None else min(timeout, left)


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks, and connects to the checked address, under the current deadline.

    Attributes:
        allow_private: skip the address check (``ALLOW_PRIVATE_IMAGE_URLS=1``: local tests,
            a private image host).
        resolver: name resolution (tests pass a fixed table).
        inner: the backend that opens sockets (tests may route a public address to a
            loopback server).
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolver: Resolver = system_resolver,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.inner = inner if inner is not None else httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._resolve(host, port)
        failures: list[httpcore.ConnectError] = []
        for address in addresses:
            try:
                stream = self.inner.connect_tcp(
                    address,
                    port,
                    timeout=_clamp(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:  # try the next address, as browsers do
                failures.append(exc)
                continue
            return _DeadlineStream(stream)
        raise failures[-1]

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used to fetch images")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)

    def _resolve(self, host: str, port: int) -> Sequence[str]:
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve host {host}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"host {host} has no address")
        if not self.allow_private:
            for address in addresses:
                kind = refusal(ipaddress.ip_address(address.split("%", 1)[0]))
                if kind is not None:
                    raise BlockedAddress(host, kind)
        return addresses


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every operation ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # server_hostname is the URL's host, so SNI and certificate checks are unaffected by
        # having connected to an address rather than a name.
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
