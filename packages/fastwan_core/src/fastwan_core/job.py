"""The job the orchestrator hands out, and the contract's rule for each of its fields.

The rules produce messages that name the field and the bad value, as the contract asks:
``"width must be between 256 and 1280, got 2000"``. A constructed :class:`Job` is always valid:
building one runs every rule and raises :class:`JobValidationError` with all that broke.
Reading one from JSON (its types, ``null``, the ``job_id`` alias) is ``fastwan_core.wire``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from fastwan_core.errors import JobValidationError
from fastwan_core.values import (
    JOB_ID_PATTERN,
    MAX_IMAGE_BASE64_CHARS,
    MAX_PROMPT_CHARS,
    MAX_URL_CHARS,
    NUMBER_RANGES,
    ImageSource,
    Size,
)

__all__ = ["Job", "cross_field_problems", "field_problems"]

# --- field rules: each returns an error message or None ------------------------------------

_Check = Callable[[Any], "str | None"]


def _between(name: str) -> _Check:
    low, high = NUMBER_RANGES[name]

    def check(value: Any) -> str | None:
        if not low <= value <= high:
            return f"{name} must be between {_fmt(low)} and {_fmt(high)}, got {_fmt(value)}"
        return None

    return check


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e18 else repr(value)


def _job_id(name: str) -> _Check:
    def check(value: str) -> str | None:
        if not JOB_ID_PATTERN.fullmatch(value):
            shown = value if len(value) <= 64 else value[:61] + "..."
            return (
                f"{name} must be 1 to 128 letters, digits, '.', '_' or '-' starting with a "
                f"letter or digit, got {shown!r}"
            )
        return None

    return check


def _prompt(value: str) -> str | None:
    if not value.strip():
        return "prompt must not be empty or blank"
    if len(value) > MAX_PROMPT_CHARS:
        return f"prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(value)}"
    return None


def _negative_prompt(value: str) -> str | None:
    if len(value) > MAX_PROMPT_CHARS:
        return f"negative_prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(value)}"
    return None


def _num_frames(value: int) -> str | None:
    low, high = NUMBER_RANGES["num_frames"]
    if not low <= value <= high:
        return f"num_frames must be between {low} and {high}, got {value}"
    if (value - 1) % 4:
        return f"num_frames must be 4k+1 (5, 9, ..., 121), got {value}"
    return None


def _image_url(value: str) -> str | None:
    scheme = value.partition("://")[0].lower() if "://" in value else ""
    if scheme not in ("http", "https"):
        # The URL itself is never echoed: it may be signed.
        return f"image_url must be an http or https URL, got scheme {scheme or 'none'!r}"
    if len(value) > MAX_URL_CHARS:
        return f"image_url must be at most {MAX_URL_CHARS} characters, got {len(value)}"
    return None


def _image_base64(value: str) -> str | None:
    if not value:
        return "image_base64 must not be empty"
    if len(value) > MAX_IMAGE_BASE64_CHARS:
        return f"image_base64 must be at most {MAX_IMAGE_BASE64_CHARS} characters, got {len(value)}"
    return None


def _finite(name: str) -> _Check:
    inner = _between(name)

    def check(value: float) -> str | None:
        if not math.isfinite(value):
            return f"{name} must be a finite number, got {value!r}"
        return inner(value)

    return check


#: Each field's rule, in the contract's order (the order of the messages).
_CHECKS: Final[Mapping[str, _Check]] = {
    "musetalk_job_id": _job_id("musetalk_job_id"),
    "buffer_job_id": _job_id("buffer_job_id"),
    "image_url": _image_url,
    "image_base64": _image_base64,
    "prompt": _prompt,
    "negative_prompt": _negative_prompt,
    "num_frames": _num_frames,
    "width": _between("width"),
    "height": _between("height"),
    "fps": _between("fps"),
    "steps": _between("steps"),
    "guidance_scale": _finite("guidance_scale"),
    "seed": _between("seed"),
}


def field_problems(values: Mapping[str, Any]) -> dict[str, str]:
    """The message of each field in ``values`` that breaks its rule, by field, in the
    contract's order; ``None`` and fields without a rule are left alone.

    The values must have the field's type already (reading JSON checks that first).
    """
    return {
        name: message
        for name, check in _CHECKS.items()
        if (value := values.get(name)) is not None
        if (message := check(value)) is not None
    }


def cross_field_problems(image_url: object, image_base64: object) -> list[str]:
    """The rules between fields: one first frame at most."""
    if image_url is not None and image_base64 is not None:
        return ["image_url and image_base64 are mutually exclusive, got both"]
    return []


@attrs.frozen(kw_only=True)
class Job:
    """One video-generation job, exactly the contract's fields and defaults.

    Attributes:
        musetalk_job_id: the orchestrator's job id; names the output file and the progress URL.
        buffer_job_id: buffer mode only: the id used on the status endpoint.
        image_url, image_base64: the first frame (image-to-video); both absent: text-to-video.
        steps: accepted for compatibility; FastWan runs its distilled schedule whatever it says.
        params: free-form, kept as sent, ignored unless a key is documented.
    """

    musetalk_job_id: str
    prompt: str
    buffer_job_id: str | None = None
    image_url: str | None = None
    image_base64: str | None = attrs.field(default=None, repr=False)
    negative_prompt: str | None = None
    num_frames: int = 121
    width: int = 720
    height: int = 1280
    fps: int = 24
    steps: int = 4
    guidance_scale: float = 1.0
    seed: int = 42
    params: Mapping[str, Any] = attrs.field(factory=dict, hash=False)

    def __attrs_post_init__(self) -> None:
        problems = [*field_problems(attrs.asdict(self, recurse=False)).values()]
        problems += cross_field_problems(self.image_url, self.image_base64)
        if problems:
            raise JobValidationError(problems, job_id=self.musetalk_job_id, buffer_job_id=self.buffer_job_id)
        # JSON's numbers may be integers; converted only now, so that a message shows the value sent.
        object.__setattr__(self, "guidance_scale", float(self.guidance_scale))

    @property
    def image_source(self) -> ImageSource | None:
        """The first frame's source, or None for text-to-video."""
        if self.image_url is None and self.image_base64 is None:
            return None
        return ImageSource(url=self.image_url, base64=self.image_base64)

    @property
    def requested_size(self) -> Size:
        return Size(self.width, self.height)

    @property
    def output_name(self) -> str:
        """The output file's name, as the contract gives it: ``{musetalk_job_id}.mp4``."""
        return f"{self.musetalk_job_id}.mp4"
