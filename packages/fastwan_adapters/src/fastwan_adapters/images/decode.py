"""From bytes to a safe RGB picture: format sniffing, base64 and data URLs, the bomb guard.

Every failure here is the input's fault, so it is ``invalid_input`` (not retryable): the same
bytes would fail the same way on any worker.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from fastwan_core import ErrorCode, JobFailure

__all__ = ["SNIFF_BYTES", "decode_base64", "decode_image", "sniff"]

#: enough leading bytes to tell the accepted formats apart
SNIFF_BYTES: Final = 12


def sniff(head: bytes) -> str | None:
    """The Pillow format name of ``head``'s magic bytes (PNG, JPEG, WEBP), or None.

    The bytes decide, never a Content-Type header or a file name: image hosts mislabel,
    and a decoder chosen by a label is an attack surface the worker does not need.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(head) >= SNIFF_BYTES and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_base64(text: str, *, max_bytes: int) -> bytes:
    """``image_base64``'s bytes: plain base64 (standard or URL-safe alphabet, padding
    optional, line breaks allowed) or a ``data:image/...;base64,`` URL."""
    payload = text.strip()
    if payload[:5].lower() == "data:":
        payload = _data_url_payload(payload)
    compact = "".join(payload.split())
    if not compact:
        raise _invalid("image_base64 holds no data")
    if len(compact) // 4 * 3 > max_bytes:
        raise _invalid(f"image_base64 decodes to more than the {max_bytes}-byte limit")
    urlsafe = "-" in compact or "_" in compact
    padded = compact + "=" * (-len(compact) % 4)
    try:
        data = base64.b64decode(padded, altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("image_base64 is not valid base64") from None
    if len(data) > max_bytes:
        raise _invalid(f"image_base64 decodes to more than the {max_bytes}-byte limit")
    return data


def _data_url_payload(url: str) -> str:
    header, comma, payload = url.partition(",")
    if not comma:
        raise _invalid("image_base64 data URL has no ',' before its data")
    media_type, *parameters = (part.strip().lower() for part in header[5:].split(";"))
    if "base64" not in parameters:
        raise _invalid("image_base64 data URL must be base64-encoded (data:image/...;base64,...)")
    if media_type and not media_type.startswith("image/"):
        raise _invalid(f"image_base64 data URL must have an image/* media type, got {media_type[:40]!r}")
    return payload


def decode_image(data: bytes, *, origin: str, max_pixels: int) -> Image.Image:
    """Decode PNG, JPEG or WebP bytes to RGB, upright as EXIF says, at most ``max_pixels``.

    The size is read from the header and checked before any pixel is decoded: a 100 kB PNG
    can declare 10000x10000 pixels and take 300 MB to decode. Animated images give their
    first frame.

    Args:
        origin: names the input in messages (``"image_url https://host/..."``), never a
            full URL.
    """
    image_format = sniff(data[:SNIFF_BYTES])
    if image_format is None:
        raise _invalid(f"{origin} is not a PNG, JPEG or WebP image")
    try:
        image = Image.open(io.BytesIO(data), formats=[image_format])
    except Image.DecompressionBombError:
        raise _invalid(
            f"{origin} declares more pixels than allowed (limit {_megapixels(max_pixels)})"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _invalid(f"{origin} could not be read as {image_format}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise _invalid(
            f"{origin} is {width}x{height} ({_megapixels(width * height)}), "
            f"over the limit of {_megapixels(max_pixels)}"
        )
    if width == 0 or height == 0:
        raise _invalid(f"{origin} has no pixels ({width}x{height})")
    try:
        image.load()
        upright = ImageOps.exif_transpose(image) or image
        return upright.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        raise _invalid(f"{origin} is a corrupt or truncated {image_format}") from None


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:g} megapixels"


def _invalid(message: str) -> JobFailure:
    return JobFailure(ErrorCode.INVALID_INPUT, message)
