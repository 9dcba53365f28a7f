"""The contract's JSON: the only module that knows its shape, both ways.

Reading a job (:func:`parse_job`): ``job_id`` is accepted for ``musetalk_job_id``, unknown keys
are ignored, ``null`` for a field with a default means the default; each field's JSON type is
checked here and its rule in :class:`~fastwan_core.job.Job`, once, and every problem is
reported at once with the ids that could be read.

Writing (one cattrs converter): jobs keep every field on the wire (the orchestrator's shape);
results, metrics and progress leave out what does not apply. Sizes travel as ``[w, h]``, enums
as their values.

The orchestrator already parses its sibling worker's answers (MuseTalk's
``WORKER_ERROR_REPORTING_SPEC.md``); the names it reads are added here, beside ours and derived
from them, so the two sets can never disagree: ``musetalk_job_id`` (= the result's job id),
``metrics.total_time`` (= ``duration_sec``) and ``metrics.stage_times`` (= ``timings``), and on
a failure ``error_message`` (= ``error``), ``error_type``, ``stage`` and ``stage_times``.
Reading back ignores the derived names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from fastwan_core.errors import JobValidationError
from fastwan_core.job import Job, cross_field_problems, field_problems
from fastwan_core.results import JobResult, Metrics, ProgressUpdate, Timings, error_type_of
from fastwan_core.values import (
    JOB_ID_PATTERN,
    MAX_IMAGE_BASE64_CHARS,
    MAX_JOB_ID_CHARS,
    MAX_PROMPT_CHARS,
    MAX_URL_CHARS,
    NUMBER_RANGES,
    Size,
    is_job_id,
)

__all__ = [
    "job_json_schema",
    "job_to_wire",
    "parse_job",
    "progress_to_wire",
    "result_from_wire",
    "result_to_wire",
]

# --- reading a job ---------------------------------------------------------------------------


@attrs.frozen
class _Field:
    """How one job field travels: its JSON type and the JSON Schema keywords beyond its
    limits (``NUMBER_RANGES``) and its default (the :class:`Job`'s)."""

    kind: type | tuple[type, ...]
    kind_name: str
    schema: Mapping[str, Any]


def _string(**schema: Any) -> _Field:
    return _Field(str, "a string", {"type": "string", **schema})


_INTEGER: Final = _Field(int, "an integer", {"type": "integer"})
_ID_SCHEMA: Final[dict[str, Any]] = {
    "pattern": "^" + JOB_ID_PATTERN.pattern + "$",
    "maxLength": MAX_JOB_ID_CHARS,
}

#: Every field, in the contract's order (of the messages and of the JSON Schema).
_FIELDS: Final[Mapping[str, _Field]] = {
    "musetalk_job_id": _string(**_ID_SCHEMA),
    "buffer_job_id": _string(**_ID_SCHEMA),
    "image_url": _string(format="uri", pattern="^https?://", maxLength=MAX_URL_CHARS),
    "image_base64": _string(minLength=1, maxLength=MAX_IMAGE_BASE64_CHARS),
    "prompt": _string(minLength=1, maxLength=MAX_PROMPT_CHARS),
    "negative_prompt": _string(maxLength=MAX_PROMPT_CHARS),
    "num_frames": _INTEGER,
    "width": _INTEGER,
    "height": _INTEGER,
    "fps": _INTEGER,
    "steps": _INTEGER,
    "guidance_scale": _Field((int, float), "a number", {"type": "number"}),
    "seed": _INTEGER,
    "params": _Field(dict, "an object", {"type": "object"}),
}
#: The fields without a default.
_REQUIRED: Final = frozenset(field.name for field in attrs.fields(Job) if field.default is attrs.NOTHING)


def parse_job(payload: object) -> Job:
    """The job in the orchestrator's JSON object (see the module's docstring).

    Raises:
        JobValidationError: with one message per bad field, in the contract's order, and the
            ``musetalk_job_id`` and ``buffer_job_id`` when they are valid ids.
    """
    if not isinstance(payload, Mapping):
        raise JobValidationError([f"the job must be a JSON object, got {type(payload).__name__}"])
    data = dict(payload)
    if data.get("musetalk_job_id") is None and data.get("job_id") is not None:
        data["musetalk_job_id"] = data["job_id"]
    raw_id, raw_buffer_id = data.get("musetalk_job_id"), data.get("buffer_job_id")
    job_id = raw_id if is_job_id(raw_id) else None
    buffer_job_id = raw_buffer_id if is_job_id(raw_buffer_id) else None

    values: dict[str, Any] = {}
    wrong: dict[str, str] = {}
    for name, field in _FIELDS.items():
        value = data.get(name)
        if value is None:
            if name in _REQUIRED:
                wrong[name] = f"{name} is required"
        elif (message := _type_error(name, field, value)) is not None:
            wrong[name] = message
        else:
            values[name] = value
    if not wrong:
        try:
            return Job(**values)  # the fields' rules run here
        except JobValidationError as error:
            raise JobValidationError(list(error.errors), job_id=job_id, buffer_job_id=buffer_job_id) from None
    # No job can be built: the rules of the fields that have their type, beside the rest.
    broken = {**wrong, **field_problems(values)}
    problems = [broken[name] for name in _FIELDS if name in broken]
    problems += cross_field_problems(data.get("image_url"), data.get("image_base64"))
    raise JobValidationError(problems, job_id=job_id, buffer_job_id=buffer_job_id)


def _type_error(name: str, field: _Field, value: Any) -> str | None:
    # bool is an int to Python, never to the contract.
    if isinstance(value, bool) or not isinstance(value, field.kind):
        shown = repr(value) if len(repr(value)) <= 64 else type(value).__name__
        return f"{name} must be {field.kind_name}, got {shown}"
    return None


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
    """The wire job as a JSON Schema (for OpenAPI pages); :func:`parse_job` stays the authority."""
    defaults = {field.name: field.default for field in attrs.fields(Job)}
    properties: dict[str, Any] = {}
    for name, field in _FIELDS.items():
        prop = dict(field.schema)
        if name in NUMBER_RANGES:
            prop["minimum"], prop["maximum"] = NUMBER_RANGES[name]
        factory = getattr(defaults[name], "factory", None)  # an attrs.Factory
        default = factory() if factory is not None else defaults[name]
        if default is not None and default is not attrs.NOTHING:
            prop["default"] = default
        if name not in _REQUIRED:
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
        "required": [name for name in _FIELDS if name in _REQUIRED],
        "additionalProperties": True,
    }


# --- writing ---------------------------------------------------------------------------------

_Unstructure = Callable[[Any], dict[str, Any]]


def _metrics_hook(base: _Unstructure) -> _Unstructure:
    def unstructure(metrics: Metrics) -> dict[str, Any]:
        wire = base(metrics)
        wire["total_time"] = metrics.duration_sec
        wire["stage_times"] = metrics.timings.stage_times()
        return wire

    return unstructure


def _result_hook(base: _Unstructure) -> _Unstructure:
    def unstructure(result: JobResult) -> dict[str, Any]:
        wire = base(result)
        if result.job_id is not None:
            wire["musetalk_job_id"] = result.job_id
        if not result.succeeded:
            if result.error is not None:
                wire["error_message"] = result.error
            wire["error_type"] = error_type_of(result.error_code)
            wire["stage"] = result.failure_stage
            wire["stage_times"] = result.metrics.timings.stage_times() if result.metrics else {}
        return wire

    return unstructure


def _make() -> cattrs.Converter:
    conv = make_converter()
    conv.register_unstructure_hook(Size, Size.as_list)
    conv.register_structure_hook(Size, lambda value, _: Size(int(value[0]), int(value[1])))
    # Inner values first: a generated hook binds the hooks of its fields when it is made.
    conv.register_unstructure_hook(
        Timings, make_dict_unstructure_fn(Timings, conv, _cattrs_omit_if_default=True)
    )
    conv.register_unstructure_hook(
        Metrics, _metrics_hook(make_dict_unstructure_fn(Metrics, conv, _cattrs_omit_if_default=True))
    )
    conv.register_unstructure_hook(
        ProgressUpdate, make_dict_unstructure_fn(ProgressUpdate, conv, _cattrs_omit_if_default=True)
    )
    conv.register_unstructure_hook(
        JobResult,
        _result_hook(
            make_dict_unstructure_fn(
                JobResult,
                conv,
                _cattrs_omit_if_default=True,
                job_id=override(omit=True),
                stage=override(omit=True),
                fatal=override(omit=True),
            )
        ),
    )
    conv.register_structure_hook(
        JobResult,
        make_dict_structure_fn(
            JobResult, conv, job_id=override(rename="musetalk_job_id"), fatal=override(omit=True)
        ),
    )
    return conv


_converter: Final[Any] = _make()


def job_to_wire(job: Job) -> dict[str, Any]:
    """The contract's JSON object for ``job``; :func:`parse_job` reads it back unchanged."""
    wire: dict[str, Any] = _converter.unstructure(job)
    return wire


def result_to_wire(result: JobResult) -> dict[str, Any]:
    """``status``, ``output_url``, ``metrics``, ``error``, ``error_code``, ``retryable``, and the
    sibling's names beside them (see the module's docstring)."""
    wire: dict[str, Any] = _converter.unstructure(result)
    return wire


def result_from_wire(payload: dict[str, Any]) -> JobResult:
    """A result read back (for services that consume it); unknown keys are ignored."""
    result: JobResult = _converter.structure(payload, JobResult)
    return result


def progress_to_wire(update: ProgressUpdate) -> dict[str, Any]:
    """The body of one progress call."""
    wire: dict[str, Any] = _converter.unstructure(update)
    return wire
