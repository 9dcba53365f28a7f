"""HttpImageLoader against a real HTTP server on 127.0.0.1, in a thread of this module.

Tests that fetch from the loopback server on purpose set ``allow_private``; the address-guard
tests leave it off and expect the refusal. Where a test needs a *public* first hop, a fixed
resolver names ``images.example`` as a public address and a routing backend delivers that
address's connections to the loopback server, as the internet would.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest
from PIL import Image

from fastwan_adapters.config import ConfigError
from fastwan_adapters.images import GuardedBackend, HttpImageLoader, ImageLoaderSettings
from fastwan_adapters.images.network import refusal, system_resolver
from fastwan_core import ErrorCode, ImageSource, JobFailure

CAP = 64 * 1024
PUBLIC_IP = "93.184.215.14"


def encoded(image_format: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 30, 30, 255)[: len(mode)]).save(buffer, image_format, **save)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` and that holds no pixels at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def exif_rotated_jpeg() -> bytes:
    """40x20 stored, left half red and right half blue, EXIF orientation 6 (turn 90° clockwise)."""
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


PNG = encoded("PNG", mode="RGBA")
JPEG = encoded("JPEG")
WEBP = encoded("WEBP")


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        path = self.path.split("?", 1)[0]
        if path.startswith("/loop/"):
            self.redirect(302, f"/loop/{int(path.rsplit('/', 1)[1]) + 1}")
            return
        route = ROUTES.get(path)
        if route is None:
            self.answer(404, b"not found", "text/plain")
        else:
            route(self)

    def answer(self, status: int, body: bytes, content_type: str, *, length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location.replace("{port}", str(self.server.server_port)))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(CAP))
        self.end_headers()
        self.wfile.write(PNG[:16])
        for _ in range(200):  # one byte every 50 ms: no single read ever waits long
            time.sleep(0.05)
            try:
                self.wfile.write(b"\x00")
                self.wfile.flush()
            except OSError:
                return

    def log_message(self, format: str, *args: Any) -> None:
        pass


ROUTES: dict[str, Callable[[Handler], None]] = {
    "/png": lambda h: h.answer(200, PNG, "image/png"),
    "/jpeg": lambda h: h.answer(200, JPEG, "image/jpeg"),
    "/webp": lambda h: h.answer(200, WEBP, "image/webp"),
    "/mislabelled": lambda h: h.answer(200, JPEG, "text/plain; charset=utf-8"),
    "/exif": lambda h: h.answer(200, exif_rotated_jpeg(), "image/jpeg"),
    "/html": lambda h: h.answer(200, b"<!DOCTYPE html><html><body>Sign in</body></html>", "image/png"),
    "/bomb": lambda h: h.answer(200, png_declaring(10_000, 10_000), "image/png"),
    "/truncated": lambda h: h.answer(200, encoded("PNG", size=(300, 300), mode="RGB")[:200], "image/png"),
    "/huge": lambda h: h.answer(200, PNG + bytes(CAP), "image/png"),
    "/huge-unannounced": lambda h: h.answer(200, PNG + bytes(CAP), "image/png", length=False),
    "/slow": Handler.drip,
    "/missing": lambda h: h.answer(404, b"gone", "text/plain"),
    "/broken": lambda h: h.answer(500, b"oops", "text/plain"),
    "/busy": lambda h: h.answer(429, b"slow down", "text/plain"),
    "/redirect": lambda h: h.redirect(302, "/png"),
    "/redirect-absolute": lambda h: h.redirect(301, "http://127.0.0.1:{port}/redirect"),
    "/to-private": lambda h: h.redirect(302, "http://10.1.2.3/secret.png"),
    "/to-metadata": lambda h: h.redirect(307, "http://169.254.169.254/latest/meta-data/"),
    "/to-localhost": lambda h: h.redirect(302, "http://localhost:{port}/png"),
    "/to-ftp": lambda h: h.redirect(302, "ftp://example.com/image.png"),
    "/to-unparsable": lambda h: h.redirect(302, "http://[::1"),
    "/to-spaced-host": lambda h: h.redirect(302, "http://exa mple.com/face.png"),
    "/to-bad-port": lambda h: h.redirect(302, "http://127.0.0.1:99999/png"),
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[str]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server_port}{path}"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _fresh_request_log(server: Server) -> None:
    server.requests.clear()


class RouteToServer(httpcore.AsyncNetworkBackend):
    """Delivers connections for PUBLIC_IP to the loopback server; records every address asked."""

    def __init__(self) -> None:
        self.connected: list[str] = []
        self._sockets = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append(host)
        target = "127.0.0.1" if host == PUBLIC_IP else host
        return await self._sockets.connect_tcp(target, port, timeout, local_address, socket_options)


def fixed_resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        return table[host] if host in table else system_resolver(host, port)

    return resolve


@pytest.fixture
def make_loader() -> Callable[..., HttpImageLoader]:
    def make(backend: GuardedBackend | None = None, **settings: Any) -> HttpImageLoader:
        options: dict[str, Any] = {"allow_private": True, "max_bytes": CAP, "total_timeout_s": 5.0}
        return HttpImageLoader(ImageLoaderSettings(**(options | settings)), backend=backend)

    return make


def failure_of(loader: HttpImageLoader, source: ImageSource) -> JobFailure:
    with pytest.raises(JobFailure) as caught:
        loader.load(source)
    return caught.value


def url(server: Server, path: str) -> ImageSource:
    return ImageSource(url=server.url(path))


# --- fetching -------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [("/png", PNG), ("/jpeg", JPEG), ("/webp", WEBP)])
def test_png_jpeg_and_webp_load_as_rgb(server: Server, make_loader: Any, path: str, expected: bytes) -> None:
    image = make_loader().load(url(server, path))

    assert image.mode == "RGB"
    assert image.size == (64, 48)
    red, green, blue = image.getpixel((32, 24))
    assert red > 150 and green < 80 and blue < 80


def test_the_bytes_decide_the_format_not_the_content_type(server: Server, make_loader: Any) -> None:
    image = make_loader().load(url(server, "/mislabelled"))

    assert (image.mode, image.size) == ("RGB", (64, 48))


def test_exif_orientation_is_applied(server: Server, make_loader: Any) -> None:
    image = make_loader().load(url(server, "/exif"))

    assert image.size == (20, 40)
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_redirects_are_followed_relative_and_absolute(server: Server, make_loader: Any) -> None:
    image = make_loader().load(url(server, "/redirect-absolute"))

    assert image.size == (64, 48)
    assert server.requests == ["/redirect-absolute", "/redirect", "/png"]


def test_a_404_is_a_fetch_failure_not_worth_a_retry(server: Server, make_loader: Any) -> None:
    failure = failure_of(make_loader(), url(server, "/missing"))

    assert (failure.code, failure.retryable) == (ErrorCode.IMAGE_FETCH_FAILED, False)
    assert "HTTP 404" in failure.message


@pytest.mark.parametrize(("path", "status"), [("/broken", 500), ("/busy", 429)])
def test_a_5xx_or_429_is_a_retryable_fetch_failure(
    server: Server, make_loader: Any, path: str, status: int
) -> None:
    failure = failure_of(make_loader(), url(server, path))

    assert (failure.code, failure.retryable) == (ErrorCode.IMAGE_FETCH_FAILED, True)
    assert f"HTTP {status}" in failure.message


def test_messages_never_show_the_path_or_query_of_a_signed_url(server: Server, make_loader: Any) -> None:
    source = ImageSource(url=server.url("/missing?X-Amz-Signature=SECRET123&token=abc"))

    failure = failure_of(make_loader(), source)

    assert "SECRET123" not in failure.message
    assert "/missing" not in failure.message
    assert f"http://127.0.0.1:{server.server_port}/..." in failure.message


def test_a_refused_connection_is_a_retryable_fetch_failure(make_loader: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    failure = failure_of(make_loader(), ImageSource(url=f"http://127.0.0.1:{closed_port}/png"))

    assert (failure.code, failure.retryable) == (ErrorCode.IMAGE_FETCH_FAILED, True)
    assert "ConnectError" in failure.message


def test_the_whole_fetch_has_one_deadline_however_the_bytes_trickle(server: Server, make_loader: Any) -> None:
    started = time.monotonic()
    failure = failure_of(make_loader(total_timeout_s=0.5), url(server, "/slow"))
    elapsed = time.monotonic() - started

    assert (failure.code, failure.retryable) == (ErrorCode.IMAGE_FETCH_FAILED, True)
    assert "within 0.5 s" in failure.message
    assert elapsed < 1.5  # the server would drip for 10 s; no single read ever waited 0.5 s


@pytest.mark.parametrize("path", ["/huge", "/huge-unannounced"])
def test_a_body_over_the_cap_is_invalid_input(server: Server, make_loader: Any, path: str) -> None:
    failure = failure_of(make_loader(), url(server, path))

    assert (failure.code, failure.retryable) == (ErrorCode.INVALID_INPUT, False)
    assert f"larger than the {CAP}-byte limit" in failure.message


def test_html_is_not_an_image_whatever_the_header_says(server: Server, make_loader: Any) -> None:
    failure = failure_of(make_loader(), url(server, "/html"))

    assert (failure.code, failure.retryable) == (ErrorCode.INVALID_INPUT, False)
    assert "is not a PNG, JPEG or WebP image" in failure.message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_is_refused_from_its_header(server: Server, make_loader: Any) -> None:
    failure = failure_of(make_loader(), url(server, "/bomb"))

    assert (failure.code, failure.retryable) == (ErrorCode.INVALID_INPUT, False)
    assert "is 10000x10000 (100 megapixels), over the limit of 40 megapixels" in failure.message


def test_a_truncated_image_is_invalid_input(server: Server, make_loader: Any) -> None:
    failure = failure_of(make_loader(), url(server, "/truncated"))

    assert (failure.code, failure.retryable) == (ErrorCode.INVALID_INPUT, False)
    assert "corrupt or truncated PNG" in failure.message


def test_too_many_redirects_fail_after_the_limit(server: Server, make_loader: Any) -> None:
    failure = failure_of(make_loader(), url(server, "/loop/0"))

    assert (failure.code, failure.retryable) == (ErrorCode.IMAGE_FETCH_FAILED, False)
    assert "redirects more than 5 times" in failure.message
    assert server.requests == [f"/loop/{n}" for n in range(6)]


def test_a_redirect_to_another_scheme_is_refused(server: Server, make_loader: Any) -> None:
    failure = failure_of(make_loader(), url(server, "/to-ftp"))

    assert failure.code is ErrorCode.INVALID_INPUT
    assert "'ftp'" in failure.message


@pytest.mark.parametrize("path", ["/to-unparsable", "/to-spaced-host", "/to-bad-port"])
def test_a_malformed_redirect_is_a_fetch_failure_not_worth_a_retry(
    server: Server, make_loader: Any, path: str
) -> None:
    failure = failure_of(make_loader(), url(server, path))

    assert (failure.code, failure.retryable) == (ErrorCode.IMAGE_FETCH_FAILED, False)
    assert "redirects badly" in failure.message
    assert "mple" not in failure.message and "::1" not in failure.message  # the Location is not shown
    assert server.requests == [path]


# --- the address guard ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_url_is_refused_when_private_urls_are_not_allowed(
    server: Server, make_loader: Any, host: str
) -> None:
    failure = failure_of(make_loader(allow_private=False), ImageSource(url=server.url("/png", host=host)))

    assert (failure.code, failure.retryable) == (ErrorCode.INVALID_INPUT, False)
    assert "loopback address" in failure.message
    assert "ALLOW_PRIVATE_IMAGE_URLS" in failure.message
    assert server.requests == []


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/to-private", "private"), ("/to-metadata", "link-local"), ("/to-localhost", "loopback")],
)
def test_a_redirect_from_a_public_host_to_a_private_address_is_refused(
    server: Server, make_loader: Any, path: str, kind: str
) -> None:
    routing = RouteToServer()
    backend = GuardedBackend(resolver=fixed_resolver({"images.example": [PUBLIC_IP]}), inner=routing)

    failure = failure_of(
        make_loader(backend, allow_private=False), ImageSource(url=server.url(path, "images.example"))
    )

    assert failure.code is ErrorCode.INVALID_INPUT
    assert f"{kind} address" in failure.message
    assert server.requests == [path]  # the public hop was fetched, the private one never
    assert routing.connected == [PUBLIC_IP]


def test_the_connection_goes_to_the_address_that_was_checked(server: Server, make_loader: Any) -> None:
    routing = RouteToServer()
    backend = GuardedBackend(resolver=fixed_resolver({"images.example": [PUBLIC_IP]}), inner=routing)

    image = make_loader(backend, allow_private=False).load(
        ImageSource(url=server.url("/png", "images.example"))
    )

    assert image.size == (64, 48)
    assert routing.connected == [PUBLIC_IP]  # no second lookup by name that could be rebound


def test_one_private_address_among_public_ones_is_enough_to_refuse(server: Server, make_loader: Any) -> None:
    routing = RouteToServer()
    backend = GuardedBackend(
        resolver=fixed_resolver({"mixed.example": [PUBLIC_IP, "127.0.0.1"]}), inner=routing
    )

    failure = failure_of(
        make_loader(backend, allow_private=False), ImageSource(url=server.url("/png", "mixed.example"))
    )

    assert "loopback address" in failure.message
    assert routing.connected == []


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "non-global"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:a00:1::1", "private"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == kind


# --- base64 ---------------------------------------------------------------------------------


def test_plain_base64_loads(make_loader: Any) -> None:
    image = make_loader().load(ImageSource(base64=base64.b64encode(JPEG).decode()))

    assert (image.mode, image.size) == ("RGB", (64, 48))


def test_a_data_url_loads(make_loader: Any) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()

    assert make_loader().load(ImageSource(base64=data_url)).size == (64, 48)


def test_wrapped_unpadded_url_safe_base64_loads(make_loader: Any) -> None:
    text = base64.urlsafe_b64encode(WEBP).decode().rstrip("=")
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))

    assert make_loader().load(ImageSource(base64=wrapped)).size == (64, 48)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not base64 at all!", "image_base64 is not valid base64"),
        ("data:image/png,rawbytes", "must be base64-encoded"),
        ("data:text/html;base64," + base64.b64encode(PNG).decode(), "must have an image/* media type"),
        ("data:image/png;base64", "has no ','"),
        (base64.b64encode(b"<html>hello</html>").decode(), "image_base64 is not a PNG, JPEG or WebP image"),
        (base64.b64encode(PNG + bytes(CAP)).decode(), f"more than the {CAP}-byte limit"),
    ],
)
def test_bad_base64_is_invalid_input(make_loader: Any, text: str, expected: str) -> None:
    failure = failure_of(make_loader(), ImageSource(base64=text))

    assert (failure.code, failure.retryable) == (ErrorCode.INVALID_INPUT, False)
    assert expected in failure.message


# --- settings -------------------------------------------------------------------------------


def test_settings_from_env() -> None:
    assert ImageLoaderSettings.from_env({}).allow_private is False
    assert ImageLoaderSettings.from_env({"ALLOW_PRIVATE_IMAGE_URLS": "1"}).allow_private is True
    with pytest.raises(ConfigError, match="ALLOW_PRIVATE_IMAGE_URLS"):
        ImageLoaderSettings.from_env({"ALLOW_PRIVATE_IMAGE_URLS": "maybe"})


def test_production_defaults() -> None:
    settings = ImageLoaderSettings()

    assert (settings.max_bytes, settings.total_timeout_s, settings.max_redirects, settings.max_pixels) == (
        20 * 1024 * 1024,
        30.0,
        5,
        40_000_000,
    )
