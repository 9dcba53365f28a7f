"""The image fetcher's network layer: which addresses it may reach.

It lives below httpx, in an httpcore network backend, because that is the only place that sees
the address a connection really goes to. The backend resolves the host once, refuses it if
*any* resolved address is loopback, private, link-local, reserved, multicast or otherwise not
globally routable (cloud metadata at 169.254.169.254 among them), then connects to the address
it checked. There is no second lookup, so DNS rebinding (a name that resolves to a public
address for the check and a private one for the connection) has no window. Every hop of a
redirect opens its connection here, so every hop is checked.

The fetch's one overall deadline is the loader's (``fastwan_adapters.deadline.within``), over
connections, TLS, redirects and body alike. One gap remains: the DNS lookup itself
(``getaddrinfo``) blocks, and is bounded only by the resolver's own timeouts.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpcore

__all__ = ["BlockedAddress", "GuardedBackend", "Resolver", "refusal", "system_resolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> addresses``, as strings ready for ``socket.create_connection``.
Resolver = Callable[[str, int], Sequence[str]]


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


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, and connects to the checked address.

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
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._resolve(host, port)
        failures: list[httpcore.ConnectError] = []
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:  # try the next address, as browsers do
                failures.append(exc)
        raise failures[-1]

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used to fetch images")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)

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
