"""POST /generate on a real uvicorn with every adapter faked: answers, status codes, progress,
one job at a time, disconnects, probes during a job, metrics, the OpenAPI page."""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import structlog

from fastwan_core import ErrorCode, Job, JobFailure, JobState, Phase, progress_to_wire
from tests.queue_worker.support import I2V, T2V, Fakes, Served, raw_post, wait_until


def post(worker: Served, job: dict[str, Any]) -> httpx.Response:
    return worker.client.post("/generate", json=job, headers={"Salad-Job-Id": "7b4e-salad"})


def test_a_text_to_video_job_answers_200_with_the_stored_video(worker: Served, fakes: Fakes) -> None:
    answer = post(worker, T2V)

    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "succeeded"
    assert body["output_url"] == "memory://t2v-1.mp4"
    assert set(body) == {"status", "output_url", "metrics", "musetalk_job_id"}
    assert body["musetalk_job_id"] == "t2v-1"
    assert body["metrics"]["output_size"] == [256, 320]
    assert body["metrics"]["worker_id"] == "test-worker"
    # The sibling worker's names, which the orchestrator parses.
    assert body["metrics"]["gpu_class"] == "FakeGPU"
    assert body["metrics"]["total_time"] == body["metrics"]["duration_sec"]
    assert set(body["metrics"]["stage_times"]) == {"text_encode", "inference", "decode", "encode", "upload"}
    final = progress_to_wire(fakes.progress.for_job("t2v-1")[-1][0])
    assert final["status"] == "succeeded" and final["metrics"] == body["metrics"]
    assert fakes.store.objects["t2v-1.mp4"].size_bytes == body["metrics"]["size_bytes"]
    assert fakes.images.loaded == []


def test_the_body_is_parsed_once(worker: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """One Job is built from the body (its rules run once): for the log id and the run alike."""
    built: list[str] = []
    check = Job.__attrs_post_init__

    def counted(job: Job) -> None:
        built.append(job.musetalk_job_id)
        check(job)

    monkeypatch.setattr(Job, "__attrs_post_init__", counted)
    assert post(worker, T2V).status_code == 200
    assert built == ["t2v-1"]


def test_an_image_to_video_job_fetches_its_first_frame(worker: Served, fakes: Fakes) -> None:
    answer = post(worker, I2V)

    assert answer.status_code == 200
    assert [source.url for source in fakes.images.loaded][-1] == I2V["image_url"]
    assert "i2v-1.mp4" in fakes.store.objects


FAILURES = [
    pytest.param(
        "images", JobFailure(ErrorCode.IMAGE_FETCH_FAILED, "image host answered 503"), 500, id="fetch-retry"
    ),
    pytest.param(
        "images",
        JobFailure(ErrorCode.IMAGE_FETCH_FAILED, "image host answered 404", retryable=False),
        424,
        id="fetch-final",
    ),
    pytest.param("generator", JobFailure(ErrorCode.GPU_OUT_OF_MEMORY, "CUDA out of memory"), 503, id="oom"),
    pytest.param("generator", JobFailure(ErrorCode.GENERATION_FAILED, "NaN latents"), 400, id="generation"),
    pytest.param("generator", RuntimeError("adapter bug"), 500, id="internal"),
    pytest.param("store", JobFailure(ErrorCode.UPLOAD_FAILED, "B2 answered 503"), 500, id="upload-retry"),
    pytest.param(
        "store", JobFailure(ErrorCode.UPLOAD_FAILED, "bucket gone", retryable=False), 424, id="upload-final"
    ),
]


@pytest.mark.parametrize(("port", "failure", "status"), FAILURES)
def test_each_failure_answers_the_status_that_carries_its_retry_decision(
    worker: Served, fakes: Fakes, port: str, failure: BaseException, status: int
) -> None:
    getattr(fakes, port).failure = failure
    job = {**I2V, "musetalk_job_id": f"fail-{status}-{port}"}

    answer = post(worker, job)

    assert answer.status_code == status
    body = answer.json()
    assert body["status"] == "failed"
    expected_code = failure.code.value if isinstance(failure, JobFailure) else "internal_error"
    assert body["error_code"] == expected_code
    assert body["retryable"] is (status >= 500)
    # The sibling's names beside ours.
    assert body["musetalk_job_id"] == job["musetalk_job_id"]
    assert body["error_message"] == body["error"]
    assert body["error_type"] == {"images": "media_error"}.get(
        port, "unknown_error" if expected_code == "internal_error" else "processing_error"
    )
    assert body["stage"] == {"images": "download", "generator": "inference", "store": "upload"}[port]
    assert body["stage_times"] == body["metrics"]["stage_times"]
    assert ("upload" in body["stage_times"]) is (port == "store")
    final = fakes.progress.for_job(job["musetalk_job_id"])[-1][0]
    assert final.status is JobState.FAILED and final.error_code is not None
    assert final.error_code.value == expected_code
    assert progress_to_wire(final)["metrics"] == body["metrics"]
    assert job["musetalk_job_id"] + ".mp4" not in fakes.store.objects


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (json.dumps({**T2V, "width": 2000}).encode(), "width must be between 256 and 1280, got 2000"),
        (json.dumps({"prompt": "no id"}).encode(), "musetalk_job_id is required"),
        (b"[1, 2]", "the job must be a JSON object, got list"),
        (b"{not json", "the body must be a JSON job object"),
        (b"", "got an empty body"),
        (b"\xff\xfe{", "the body must be a JSON job object"),
    ],
)
def test_invalid_input_answers_422_naming_what_is_wrong(worker: Served, body: bytes, names: str) -> None:
    answer = worker.client.post("/generate", content=body, headers={"Content-Type": "application/json"})

    assert answer.status_code == 422
    result = answer.json()
    assert result["error_code"] == "invalid_input" and result["retryable"] is False
    assert names in result["error"]
    assert (result["error_message"], result["error_type"], result["stage"]) == (
        result["error"],
        "media_error",
        "validation",
    )
    assert result["stage_times"] == {}


def test_an_oversized_body_is_refused_413_before_it_is_read(worker: Served) -> None:
    host, port = worker.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", "/generate")
        conn.putheader("Content-Length", "40000000")  # declared; only one byte follows
        conn.endheaders(b"{")
        answer = conn.getresponse()
        body = json.loads(answer.read())
    finally:
        conn.close()

    assert answer.status == 413
    assert body["error_code"] == "invalid_input" and "at most" in body["error"]


def test_a_second_job_while_one_runs_answers_429(worker: Served, fakes: Fakes) -> None:
    release = threading.Event()
    fakes.generator.on_step = lambda index: release.wait(10) if index == 1 else None
    busy_before = worker.metric("fastwan_requests_rejected_total", reason="busy")
    first: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: first.append(post(worker, {**T2V, "musetalk_job_id": "long-1"})))
    thread.start()
    try:
        wait_until(lambda: fakes.generator.steps_run == [1], 10, "the first job's first step")

        second = post(worker, {**T2V, "musetalk_job_id": "second-1"})
        health = worker.client.get("/health").json()
    finally:
        release.set()
        thread.join(10)

    assert second.status_code == 429
    assert second.json()["retryable"] is True and "long-1" in second.json()["error"]
    assert health["busy"] is True and health["job_id"] == "long-1"
    assert first[0].status_code == 200
    assert "second-1.mp4" not in fakes.store.objects
    assert worker.metric("fastwan_requests_rejected_total", reason="busy") == busy_before + 1


def test_health_answers_within_100_ms_while_a_job_runs(worker: Served, fakes: Fakes) -> None:
    fakes.generator.on_step = lambda _index: time.sleep(0.4)
    thread = threading.Thread(target=lambda: post(worker, {**T2V, "musetalk_job_id": "slow-1"}))
    thread.start()
    latencies = []
    try:
        wait_until(lambda: fakes.generator.steps_run == [1], 10, "the job's first step")
        while thread.is_alive() and len(latencies) < 20:
            started = time.perf_counter()
            assert worker.client.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    finally:
        thread.join(10)

    assert len(latencies) >= 5
    assert max(latencies) < 0.1, latencies


def caller_left(caplog: pytest.LogCaptureFixture) -> Callable[[], bool]:
    """The server has told the job to stop because its caller hung up (its log says so after)."""
    caplog.set_level(logging.WARNING, logger="queue_worker.runner")
    return lambda: any("the caller disconnected" in record.getMessage() for record in caplog.records)


def test_a_caller_who_hangs_up_cancels_the_job_at_its_next_step(
    worker: Served, fakes: Fakes, caplog: pytest.LogCaptureFixture
) -> None:
    runner = worker.container.slot()
    seen = caller_left(caplog)
    fakes.generator.on_step = lambda index: (
        wait_until(seen, 10, "the server to see the caller leave") if index == 1 else None
    )
    job = {**T2V, "musetalk_job_id": "gone-1"}
    cancelled_before = worker.metric("fastwan_jobs_total", outcome="cancelled", error_code="cancelled")

    sock = raw_post(worker.url, "/generate", json.dumps(job).encode())
    wait_until(lambda: fakes.generator.steps_run == [1], 10, "the job's first step")
    sock.close()
    wait_until(lambda: not runner.busy, 10, "the job to end")

    assert fakes.generator.steps_run == [1]
    # Nothing is said of the job once its caller has gone: Salad hands it out again, and the
    # run that ends it reports its end (a `cancelled` here contradicted a `succeeded` there).
    assert {update.status for update, _ in fakes.progress.for_job("gone-1")} == {JobState.RUNNING}
    assert "gone-1.mp4" not in fakes.store.objects
    wait_until(
        lambda: (
            worker.metric("fastwan_jobs_total", outcome="cancelled", error_code="cancelled")
            == cancelled_before + 1
        ),
        5,
        "the cancelled job to be counted",
    )


def test_the_line_that_says_the_caller_left_names_the_job(worker: Served, fakes: Fakes) -> None:
    lines: list[dict[str, object]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "the caller disconnected" in record.getMessage():
                lines.append(structlog.contextvars.get_contextvars())

    capture = Capture()
    logging.getLogger("queue_worker.runner").addHandler(capture)
    fakes.generator.on_step = lambda index: (
        wait_until(lambda: bool(lines), 10, "the server to see the caller leave") if index == 1 else None
    )
    try:
        sock = raw_post(worker.url, "/generate", json.dumps({**T2V, "musetalk_job_id": "gone-3"}).encode())
        wait_until(lambda: fakes.generator.steps_run == [1], 10, "the job's first step")
        sock.close()
        wait_until(lambda: not worker.container.slot().busy, 10, "the job to end")
    finally:
        logging.getLogger("queue_worker.runner").removeHandler(capture)

    assert lines and lines[0]["job_id"] == "gone-3", lines


def test_a_caller_who_hangs_up_during_decode_stops_the_job_within_one_chunk(
    worker: Served, fakes: Fakes, caplog: pytest.LogCaptureFixture
) -> None:
    runner = worker.container.slot()
    seen = caller_left(caplog)
    fakes.generator.on_chunk = lambda index: (
        wait_until(seen, 10, "the server to see the caller leave") if index == 2 else None
    )
    job = {**T2V, "musetalk_job_id": "gone-2", "num_frames": 17}  # five decode chunks

    sock = raw_post(worker.url, "/generate", json.dumps(job).encode())
    wait_until(lambda: fakes.generator.chunks_decoded == [1, 2], 10, "the second decode chunk")
    sock.close()
    wait_until(lambda: not runner.busy, 10, "the job to end")

    assert fakes.generator.chunks_decoded == [1, 2]
    assert fakes.encoder.sessions[-1].state == "aborted"
    assert {update.status for update, _ in fakes.progress.for_job("gone-2")} == {JobState.RUNNING}
    assert "gone-2.mp4" not in fakes.store.objects


def test_progress_goes_through_every_phase_in_order_throttled(worker: Served, fakes: Fakes) -> None:
    fakes.generator.on_step = lambda _index: time.sleep(0.6)
    job = {**I2V, "musetalk_job_id": "progress-1"}

    assert post(worker, job).status_code == 200

    updates = fakes.progress.for_job("progress-1")
    running = [(update, at) for update, at in updates if update.status is JobState.RUNNING]
    phases = [update.phase for update, _ in running]
    assert list(dict.fromkeys(phases)) == [
        Phase.DOWNLOADING,
        Phase.INFERENCE,
        Phase.DECODING,
        Phase.ENCODING,
        Phase.UPLOADING,
    ]
    values = [update.progress for update, _ in running]
    assert values == sorted(values)
    for (before, at_before), (after, at_after) in itertools.pairwise(running):
        if after.phase is before.phase:  # no phase change: at most one a second
            assert at_after - at_before >= 0.9, (before, after)
    assert any(update.step == 3 for update, _ in running)  # 1.2 s after the phase began: sent
    assert updates[-1][0].status is JobState.SUCCEEDED and updates[-1][0].progress == 1.0


def test_metrics_count_jobs_by_outcome_and_error_code(worker: Served, fakes: Fakes) -> None:
    succeeded = worker.metric("fastwan_jobs_total", outcome="succeeded", error_code="")
    oom = worker.metric("fastwan_jobs_total", outcome="failed", error_code="gpu_out_of_memory")
    denoise = worker.metric("fastwan_phase_duration_seconds_count", phase="denoise")

    post(worker, {**T2V, "musetalk_job_id": "count-1"})
    fakes.generator.failure = JobFailure(ErrorCode.GPU_OUT_OF_MEMORY, "CUDA out of memory")
    post(worker, {**T2V, "musetalk_job_id": "count-2"})

    assert worker.metric("fastwan_jobs_total", outcome="succeeded", error_code="") == succeeded + 1
    assert worker.metric("fastwan_jobs_total", outcome="failed", error_code="gpu_out_of_memory") == oom + 1
    assert worker.metric("fastwan_phase_duration_seconds_count", phase="denoise") == denoise + 1
    assert worker.metric("fastwan_ready") == 1
    assert worker.metric("fastwan_busy") == 0
    assert worker.metric("fastwan_startup_seconds") > 0


def test_the_openapi_page_documents_the_job_schema(worker: Served) -> None:
    spec = worker.client.get("/openapi.json").json()
    operation = spec["paths"]["/generate"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]

    assert {"musetalk_job_id", "prompt", "width", "height", "num_frames", "image_url"} <= set(
        schema["properties"]
    )
    assert set(schema["required"]) == {"musetalk_job_id", "prompt"}
    assert {"200", "422", "429", "503"} <= set(operation["responses"])
    assert worker.client.get("/docs").status_code == 200
