"""The job the orchestrator hands out, its limits, and its wire format.

Validation happens once, at the edge (:meth:`Job.from_wire`), and produces messages that name
the field and the bad value, as the contract asks: ``"width must be between 256 and 1280, got
2000"``. A constructed :class:`Job` is always valid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeGuard

import attrs

from fastwan_core.errors import JobValidationError

__all__ = ["ImageSource", "Job", "Size", "is_job_id", "job_json_schema"]

_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_PROMPT_CHARS: Final = 2000
MAX_IMAGE_BASE64_CHARS: Final = 28_000_000  # 20 MB of image, base64-encoded
MAX_URL_CHARS: Final = 8192
MAX_SEED: Final = 2**63 - 1


@attrs.frozen
class Size:
    """A frame size in pixels."""

    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def as_list(self) -> list[int]:
        """``[w, h]``, the contract's shape for sizes in ``metrics``."""
        return [self.width, self.height]

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@attrs.frozen
class ImageSource:
    """Where the first frame comes from: exactly one of ``url`` and ``base64`` is set."""

    url: str | None = None
    base64: str | None = None

    def describe(self) -> str:
        """A log-safe description: never the URL's path or query (it may be signed)."""
        if self.url is None:
            return f"inline base64 ({len(self.base64 or '')} characters)"
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}/..."


def is_job_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid job id (``musetalk_job_id`` or ``buffer_job_id``).

    Ids name files and URL paths, so they are 1 to 128 letters, digits, '.', '_' or '-',
    starting with a letter or digit.
    """
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


# --- field rules: each returns an error message or None ------------------------------------

_Check = Callable[[Any], "str | None"]


def _between(name: str, low: float, high: float) -> _Check:
    def check(value: Any) -> str | None:
        if not low <= value <= high:
            return f"{name} must be between {_fmt(low)} and {_fmt(high)}, got {_fmt(value)}"
        return None

    return check


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e18 else repr(value)


def _job_id(name: str) -> _Check:
    def check(value: str) -> str | None:
        if not _ID_RE.fullmatch(value):
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
    if not 5 <= value <= 121:
        return f"num_frames must be between 5 and 121, got {value}"
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


def _finite(name: str, low: float, high: float) -> _Check:
    inner = _between(name, low, high)

    def check(value: float) -> str | None:
        if not math.isfinite(value):
            return f"{name} must be a finite number, got {value!r}"
        return inner(value)

    return check


@attrs.frozen
class _Rule:
    """How one wire field is read: its JSON type, default, check, and JSON Schema."""

    kind: type | tuple[type, ...]
    kind_name: str
    schema: Mapping[str, Any]
    required: bool = False
    default: Any = None
    check: _Check | None = None


def _integer(name: str, low: int, high: int, default: int, check: _Check | None = None) -> _Rule:
    schema = {"type": "integer", "minimum": low, "maximum": high, "default": default}
    return _Rule(int, "an integer", schema, default=default, check=check or _between(name, low, high))


def _string(check: _Check, *, required: bool = False, **schema: Any) -> _Rule:
    return _Rule(str, "a string", {"type": "string", **schema}, required=required, check=check)


_ID_SCHEMA: Final[dict[str, Any]] = {"pattern": "^" + _ID_RE.pattern + "$", "maxLength": 128}

_RULES: Final[dict[str, _Rule]] = {
    "musetalk_job_id": _string(_job_id("musetalk_job_id"), required=True, **_ID_SCHEMA),
    "buffer_job_id": _string(_job_id("buffer_job_id"), **_ID_SCHEMA),
    "image_url": _string(_image_url, format="uri", pattern="^https?://", maxLength=MAX_URL_CHARS),
    "image_base64": _string(_image_base64, minLength=1, maxLength=MAX_IMAGE_BASE64_CHARS),
    "prompt": _string(_prompt, required=True, minLength=1, maxLength=MAX_PROMPT_CHARS),
    "negative_prompt": _string(_negative_prompt, maxLength=MAX_PROMPT_CHARS),
    "num_frames": _integer("num_frames", 5, 121, 121, check=_num_frames),
    "width": _integer("width", 256, 1280, 720),
    "height": _integer("height", 256, 1280, 1280),
    "fps": _integer("fps", 1, 60, 24),
    "steps": _integer("steps", 1, 100, 4),
    "guidance_scale": _Rule(
        (int, float),
        "a number",
        {"type": "number", "minimum": 0, "maximum": 20, "default": 1.0},
        default=1.0,
        check=_finite("guidance_scale", 0, 20),
    ),
    "seed": _integer("seed", 0, MAX_SEED, 42),
    "params": _Rule(dict, "an object", {"type": "object", "default": {}}),
}

_DESCRIPTIONS: Final = {
    "musetalk_job_id": "The orchestrator's job id; names the output file. `job_id` is accepted as an alias.",
    "buffer_job_id": "Buffer mode only: the id used on the status endpoint.",
    "image_url": "The first frame (image-to-video), http or https. Absent or null: text-to-video.",
    "image_base64": "The first frame inline (base64 or a data URL), instead of image_url.",
    "num_frames": "4k+1 frames, 5..121 (121 is 5 s at 24 fps).",
    "steps": "Accepted for compatibility; FastWan runs its distilled 3-step schedule.",
    "guidance_scale": "Accepted for compatibility; the distilled model runs without guidance.",
    "params": "Free-form; ignored unless a key is documented.",
}


def job_json_schema() -> dict[str, Any]:
    """The wire job as a JSON Schema (for OpenAPI pages); ``Job.from_wire`` stays the authority."""
    properties: dict[str, Any] = {}
    for name, rule in _RULES.items():
        prop = dict(rule.schema)
        if not rule.required:
            prop = {
                "anyOf": [prop, {"type": "null"}],
                **({"default": prop.pop("default")} if "default" in prop else {}),
            }
        if name in _DESCRIPTIONS:
            prop["description"] = _DESCRIPTIONS[name]
        properties[name] = prop
    return {
        "title": "Job",
        "type": "object",
        "properties": properties,
        "required": [name for name, rule in _RULES.items() if rule.required],
        "additionalProperties": True,
    }


def _type_error(name: str, rule: _Rule, value: Any) -> str | None:
    # bool is an int to Python, never to the contract.
    if isinstance(value, bool) or not isinstance(value, rule.kind):
        shown = repr(value) if len(repr(value)) <= 64 else type(value).__name__
        return f"{name} must be {rule.kind_name}, got {shown}"
    return None


def _cross_field_problems(image_url: str | None, image_base64: str | None) -> list[str]:
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
        problems = [
            message
            for name, rule in _RULES.items()
            if rule.check is not None and (value := getattr(self, name)) is not None
            if (message := rule.check(value)) is not None
        ]
        problems += _cross_field_problems(self.image_url, self.image_base64)
        if problems:
            raise JobValidationError(problems, job_id=self.musetalk_job_id, buffer_job_id=self.buffer_job_id)

    @classmethod
    def from_wire(cls, payload: object) -> Job:
        """Build a job from the orchestrator's JSON object.

        ``job_id`` is accepted for ``musetalk_job_id``; unknown keys are ignored; ``null`` for a
        field with a default means the default.

        Raises:
            JobValidationError: with one message per bad field.
        """
        if not isinstance(payload, Mapping):
            raise JobValidationError([f"the job must be a JSON object, got {type(payload).__name__}"])
        data = dict(payload)
        if data.get("musetalk_job_id") is None and data.get("job_id") is not None:
            data["musetalk_job_id"] = data["job_id"]
        raw_id = data.get("musetalk_job_id")
        job_id = raw_id if is_job_id(raw_id) else None
        raw_buffer_id = data.get("buffer_job_id")
        buffer_job_id = raw_buffer_id if is_job_id(raw_buffer_id) else None

        problems: list[str] = []
        values: dict[str, Any] = {}
        for name, rule in _RULES.items():
            value = data.get(name)
            if value is None:
                if rule.required:
                    problems.append(f"{name} is required")
                continue
            message = _type_error(name, rule, value)
            if message is None and rule.check is not None:
                message = rule.check(value)
            if message is not None:
                problems.append(message)
            else:
                values[name] = float(value) if name == "guidance_scale" else value
        problems += _cross_field_problems(data.get("image_url"), data.get("image_base64"))
        if problems:
            raise JobValidationError(problems, job_id=job_id, buffer_job_id=buffer_job_id)
        return cls(**values)

    def to_wire(self) -> dict[str, Any]:
        """The contract's JSON object for this job; ``from_wire`` reads it back unchanged."""
        from fastwan_core.wire import converter

        wire: dict[str, Any] = converter.unstructure(self)
        return wire

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
