"""The job: the contract's example, every field's rules, and arbitrary input."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastwan_core import (
    ImageSource,
    Job,
    JobValidationError,
    is_job_id,
    job_json_schema,
    job_to_wire,
    parse_job,
)

# The contract's example job, comments removed.
CONTRACT_EXAMPLE: dict[str, Any] = {
    "buffer_job_id": "b-7f3a",
    "musetalk_job_id": "5b1c9e0e-2c1f-4c3e-9a57-1f2d3c4b5a69",
    "image_url": "https://cdn.example.com/face.png",
    "image_base64": None,
    "prompt": "She speaks with calm composed energy...",
    "negative_prompt": None,
    "num_frames": 121,
    "width": 720,
    "height": 1280,
    "fps": 24,
    "steps": 4,
    "guidance_scale": 1.0,
    "seed": 42,
    "params": {},
}


def test_contract_example_round_trips() -> None:
    job = parse_job(CONTRACT_EXAMPLE)
    assert job_to_wire(job) == CONTRACT_EXAMPLE
    assert parse_job(job_to_wire(job)) == job


def test_defaults_are_the_contracts() -> None:
    job = parse_job({"musetalk_job_id": "j1", "prompt": "a cat"})
    assert (job.num_frames, job.width, job.height, job.fps) == (121, 720, 1280, 24)
    assert (job.steps, job.guidance_scale, job.seed) == (4, 1.0, 42)
    assert job.image_source is None
    assert job.params == {}
    assert job.output_name == "j1.mp4"


def test_job_id_alias_unknown_keys_and_params() -> None:
    job = parse_job({"job_id": "j2", "prompt": "p", "surprise": 1, "params": {"style": "anime"}})
    assert job.musetalk_job_id == "j2"
    assert job.params == {"style": "anime"}
    assert "surprise" not in job_to_wire(job)
    assert job_to_wire(job)["musetalk_job_id"] == "j2"


def test_null_means_default() -> None:
    job = parse_job({"musetalk_job_id": "j", "prompt": "p", "width": None, "seed": None})
    assert (job.width, job.seed) == (720, 42)


def test_image_sources() -> None:
    by_url = parse_job({"musetalk_job_id": "j", "prompt": "p", "image_url": "http://h/x.png"})
    assert by_url.image_source == ImageSource(url="http://h/x.png")
    inline = parse_job({"musetalk_job_id": "j", "prompt": "p", "image_base64": "aGk="})
    assert inline.image_source == ImageSource(base64="aGk=")


def test_describe_never_shows_a_signed_url() -> None:
    source = ImageSource(url="https://user:pw@bucket.s3.amazonaws.com/face.png?X-Amz-Signature=secret")
    assert source.describe() == "https://bucket.s3.amazonaws.com/..."


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("musetalk_job_id", None, "musetalk_job_id is required"),
        ("musetalk_job_id", "../etc/passwd", "musetalk_job_id must be 1 to 128 letters"),
        ("musetalk_job_id", 17, "musetalk_job_id must be a string, got 17"),
        ("buffer_job_id", "a/b", "buffer_job_id must be 1 to 128 letters"),
        ("prompt", None, "prompt is required"),
        ("prompt", "   ", "prompt must not be empty or blank"),
        ("prompt", "x" * 2001, "prompt must be at most 2000 characters, got 2001"),
        ("negative_prompt", "x" * 2001, "negative_prompt must be at most 2000 characters, got 2001"),
        ("num_frames", 8, "num_frames must be 4k+1"),
        ("num_frames", 1, "num_frames must be between 5 and 121, got 1"),
        ("num_frames", 125, "num_frames must be between 5 and 121, got 125"),
        ("num_frames", 121.0, "num_frames must be an integer, got 121.0"),
        ("width", 2000, "width must be between 256 and 1280, got 2000"),
        ("width", 255, "width must be between 256 and 1280, got 255"),
        ("height", 100, "height must be between 256 and 1280, got 100"),
        ("height", "720", "height must be an integer, got '720'"),
        ("fps", 0, "fps must be between 1 and 60, got 0"),
        ("steps", 0, "steps must be between 1 and 100, got 0"),
        ("guidance_scale", -1, "guidance_scale must be between 0 and 20, got -1"),
        ("guidance_scale", math.nan, "guidance_scale must be a finite number, got nan"),
        ("seed", -5, "seed must be between 0 and"),
        ("seed", True, "seed must be an integer, got True"),
        ("image_url", "ftp://host/x.png", "image_url must be an http or https URL, got scheme 'ftp'"),
        ("image_url", "face.png", "image_url must be an http or https URL, got scheme 'none'"),
        ("image_base64", "", "image_base64 must not be empty"),
        ("params", [1, 2], "params must be an object, got [1, 2]"),
    ],
)
def test_each_invalid_field_is_named(field: str, value: Any, message: str) -> None:
    payload = {"musetalk_job_id": "j1", "prompt": "a cat", field: value}
    with pytest.raises(JobValidationError) as caught:
        parse_job(payload)
    assert len(caught.value.errors) == 1
    assert caught.value.errors[0].startswith(message)
    assert caught.value.errors[0].split()[0] == field


def test_every_problem_is_reported_at_once_with_the_ids() -> None:
    with pytest.raises(JobValidationError) as caught:
        parse_job({"musetalk_job_id": "j9", "buffer_job_id": "b9", "prompt": "", "width": 9999, "fps": 0})
    assert len(caught.value.errors) == 3
    assert (caught.value.job_id, caught.value.buffer_job_id) == ("j9", "b9")


def test_both_image_sources_is_an_error() -> None:
    with pytest.raises(JobValidationError, match="image_url and image_base64 are mutually exclusive"):
        parse_job({"musetalk_job_id": "j", "prompt": "p", "image_url": "https://h/x", "image_base64": "aGk="})


def test_a_secret_url_is_never_echoed() -> None:
    with pytest.raises(JobValidationError) as caught:
        parse_job({"musetalk_job_id": "j", "prompt": "p", "image_url": "s3://bucket/key?token=SECRET"})
    assert "SECRET" not in str(caught.value)


def test_not_an_object() -> None:
    with pytest.raises(JobValidationError, match="the job must be a JSON object, got list"):
        parse_job([1, 2])


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(JobValidationError, match="width must be between 256 and 1280, got 10"):
        Job(musetalk_job_id="j", prompt="p", width=10)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
job_keys = st.sampled_from([*CONTRACT_EXAMPLE, "job_id"]) | st.text(max_size=12)


@given(st.dictionaries(job_keys, json_values, max_size=16))
def test_arbitrary_json_gives_a_job_or_the_validation_error(payload: dict[str, Any]) -> None:
    try:
        job = parse_job(payload)
    except JobValidationError as error:
        assert error.errors
        assert all(isinstance(message, str) and message for message in error.errors)
    else:
        assert parse_job(job_to_wire(job)) == job


@given(json_values)
def test_arbitrary_json_values_are_rejected_cleanly(payload: Any) -> None:
    with pytest.raises(JobValidationError):
        parse_job(payload if not isinstance(payload, dict) else {**payload, "prompt": None})


def test_the_json_schema_describes_every_field_with_its_limits() -> None:
    schema = job_json_schema()
    assert set(schema["properties"]) == set(CONTRACT_EXAMPLE)
    assert schema["required"] == ["musetalk_job_id", "prompt"]
    width = schema["properties"]["width"]
    assert width["default"] == 720
    assert {"type": "integer", "minimum": 256, "maximum": 1280} in width["anyOf"]


def test_the_job_id_rule_is_public() -> None:
    assert is_job_id("5b1c9e0e-2c1f.x_y")
    assert not is_job_id("../x") and not is_job_id("") and not is_job_id(7) and not is_job_id("a" * 129)


def test_type_errors_and_broken_rules_come_in_the_contracts_order() -> None:
    payload = {"musetalk_job_id": "j", "prompt": "", "width": "wide", "fps": 0, "seed": 10**30}
    with pytest.raises(JobValidationError) as caught:
        parse_job(payload)
    assert caught.value.errors == (
        "prompt must not be empty or blank",
        "width must be an integer, got 'wide'",
        "fps must be between 1 and 60, got 0",
        "seed must be between 0 and 9223372036854775807, got 1000000000000000000000000000000",
    )
    assert (caught.value.job_id, caught.value.buffer_job_id) == ("j", None)


def test_parsing_and_building_give_the_same_messages() -> None:
    bad = {"musetalk_job_id": "../j", "prompt": " ", "num_frames": 8, "width": 9, "guidance_scale": 10**30}
    with pytest.raises(JobValidationError) as parsed:
        parse_job(bad)
    with pytest.raises(JobValidationError) as built:
        Job(**bad)
    assert parsed.value.errors == built.value.errors
    assert parsed.value.errors[-1] == "guidance_scale must be between 0 and 20, got " + str(10**30)
    assert parsed.value.job_id is None  # not a usable id; the Job built directly says what it got
    assert built.value.job_id == "../j"


def test_a_number_becomes_a_float_once_the_rules_have_seen_it() -> None:
    assert (
        repr(parse_job({"musetalk_job_id": "j", "prompt": "p", "guidance_scale": 2}).guidance_scale) == "2.0"
    )
    assert repr(Job(musetalk_job_id="j", prompt="p", guidance_scale=3).guidance_scale) == "3.0"


class _CountingStr(str):
    """A string that counts how often a rule looks at it (``prompt``'s rule strips it)."""

    strips = 0

    def strip(self, chars: str | None = None) -> str:
        type(self).strips += 1
        return super().strip(chars)


def test_parsing_runs_each_rule_once() -> None:
    _CountingStr.strips = 0
    job = parse_job({"musetalk_job_id": "j", "prompt": _CountingStr("a cat")})
    assert job.prompt == "a cat"
    assert _CountingStr.strips == 1
