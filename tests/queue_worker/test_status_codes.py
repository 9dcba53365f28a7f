"""The status code is Salad's retry decision: 5xx exactly for retryable failures."""

from __future__ import annotations

import pytest

from fastwan_core import ErrorCode, JobResult, JobState
from queue_worker.status_codes import http_status

#: What Salad does with a status (contract, "Queue mode"): 408, 429 and 5xx are retried.
SALAD_RETRIES = {408, 429}


def salad_retries(status: int) -> bool:
    return status in SALAD_RETRIES or status >= 500


def test_success_is_200() -> None:
    assert http_status(JobResult(status=JobState.SUCCEEDED, output_url="https://b2/x.mp4")) == 200


@pytest.mark.parametrize("code", list(ErrorCode))
@pytest.mark.parametrize("retryable", [True, False])
def test_salad_retries_a_failure_exactly_when_it_is_retryable(code: ErrorCode, retryable: bool) -> None:
    status = http_status(JobResult.failure(code, "why", retryable=retryable))

    assert salad_retries(status) is retryable
    assert 400 <= status < 600


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.INVALID_INPUT, 422),
        (ErrorCode.IMAGE_FETCH_FAILED, 500),
        (ErrorCode.GPU_OUT_OF_MEMORY, 503),
        (ErrorCode.GENERATION_FAILED, 400),
        (ErrorCode.UPLOAD_FAILED, 500),
        (ErrorCode.CANCELLED, 499),
        (ErrorCode.WORKER_SHUTDOWN, 503),
        (ErrorCode.INTERNAL_ERROR, 500),
    ],
)
def test_each_code_with_its_own_retry_flag_has_the_documented_status(code: ErrorCode, status: int) -> None:
    assert http_status(JobResult.failure(code, "why")) == status


def test_a_failure_without_a_code_or_flag_is_retried_rather_than_lost() -> None:
    assert http_status(JobResult(status=JobState.FAILED, error="?")) == 500
