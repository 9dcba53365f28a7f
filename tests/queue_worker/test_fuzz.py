"""A fuzz of POST /generate: whatever the body, invalid input never gets a 5xx (Salad would retry
it, three times, on other nodes, for nothing), and every answer is the contract's JSON body."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.queue_worker.support import T2V, Served

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
job_fields = st.sampled_from(
    [*T2V, "image_url", "image_base64", "fps", "seed", "steps", "guidance_scale", "job_id"]
)
# A valid job with a few fields replaced by anything: the likeliest shape of a wrong job.
perturbed_jobs = st.dictionaries(job_fields, json_values, max_size=4).map(lambda changes: {**T2V, **changes})
raw_bodies = st.binary(max_size=200) | st.text(max_size=200).map(str.encode)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


JSON = {"Content-Type": "application/json"}


def check(answer_status: int, body: dict[str, Any]) -> None:
    assert answer_status < 500, body
    assert body["status"] in {"succeeded", "failed"}
    if body["status"] == "failed":
        assert answer_status in {400, 422, 424}
        assert body["error_code"] == "invalid_input" and body["retryable"] is False, body
    else:
        assert answer_status == 200


@FUZZ
@given(job=perturbed_jobs | json_values)
def test_any_json_body_is_a_success_or_a_4xx(worker: Served, job: Any) -> None:
    answer = worker.client.post(
        "/generate", content=json.dumps(job), headers={"Content-Type": "application/json"}
    )
    check(answer.status_code, answer.json())


@FUZZ
@given(body=raw_bodies)
def test_any_byte_body_is_a_success_or_a_4xx(worker: Served, body: bytes) -> None:
    answer = worker.client.post("/generate", content=body, headers=JSON)
    check(answer.status_code, answer.json())
