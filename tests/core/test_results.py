"""Results, metrics and progress on the wire: exactly the contract's JSON."""

from __future__ import annotations

import pytest

from fastwan_core import (
    ErrorCode,
    JobResult,
    JobState,
    Metrics,
    Phase,
    ProgressUpdate,
    Size,
    Timings,
    progress_to_wire,
    result_from_wire,
    result_to_wire,
)

CONTRACT_RETRYABLE = {
    "invalid_input": False,
    "image_fetch_failed": True,
    "gpu_out_of_memory": True,
    "generation_failed": False,
    "upload_failed": True,
    "cancelled": False,
    "worker_shutdown": True,
    "internal_error": True,
}


def test_every_code_of_the_contract_with_its_retryable_flag() -> None:
    assert {code.value: code.retryable for code in ErrorCode} == CONTRACT_RETRYABLE


def test_success_on_the_wire() -> None:
    metrics = Metrics(
        duration_sec=12.5,
        peak_vram_gb=21.0,
        fps=9.68,
        timings=Timings(
            text_encode_s=0.5, denoise_s=8.0, decode_s=2.0, encode_s=1.0, upload_s=1.0, total_s=12.5
        ),
        steps=3,
        seed=42,
        model_id="FastVideo/FastWan2.2-TI2V-5B-Diffusers",
        generated_size=Size(704, 1248),
        output_size=Size(720, 1280),
        num_frames=121,
        video_fps=24,
        size_bytes=1234,
        sha1="ab" * 20,
        worker_id="vast-1",
        gpu_name="NVIDIA H100",
        worker_version="0.1.0",
        gpu_class="H100-80GB",
    )
    result = JobResult(
        status=JobState.SUCCEEDED, job_id="j1", output_url="https://f005/file/b/j1.mp4", metrics=metrics
    )
    wire = result_to_wire(result)
    assert wire == {
        "status": "succeeded",
        "output_url": "https://f005/file/b/j1.mp4",
        "musetalk_job_id": "j1",
        "metrics": {
            "duration_sec": 12.5,
            "peak_vram_gb": 21.0,
            "fps": 9.68,
            "timings": {
                "text_encode_s": 0.5,
                "denoise_s": 8.0,
                "decode_s": 2.0,
                "encode_s": 1.0,
                "upload_s": 1.0,
                "total_s": 12.5,
            },
            "steps": 3,
            "seed": 42,
            "model_id": "FastVideo/FastWan2.2-TI2V-5B-Diffusers",
            "generated_size": [704, 1248],
            "output_size": [720, 1280],
            "num_frames": 121,
            "video_fps": 24,
            "size_bytes": 1234,
            "sha1": "ab" * 20,
            "worker_id": "vast-1",
            "gpu_name": "NVIDIA H100",
            "worker_version": "0.1.0",
            # The names the orchestrator parses from its sibling worker, derived from ours:
            "gpu_class": "H100-80GB",
            "total_time": 12.5,
            "stage_times": {
                "text_encode": 0.5,
                "inference": 8.0,
                "decode": 2.0,
                "encode": 1.0,
                "upload": 1.0,
            },
        },
    }
    assert result_from_wire(wire) == result
    # The final progress call carries the same metrics.
    assert progress_to_wire(result.progress_update("w1")) == {
        "status": "succeeded",
        "progress": 1.0,
        "output_url": result.output_url,
        "worker_id": "w1",
        "metrics": wire["metrics"],
    }


SIBLING_ERROR_TYPE = {
    "invalid_input": "media_error",
    "image_fetch_failed": "media_error",
    "gpu_out_of_memory": "processing_error",
    "generation_failed": "processing_error",
    "upload_failed": "processing_error",
    "cancelled": "processing_error",
    "worker_shutdown": "processing_error",
    "internal_error": "unknown_error",
}


@pytest.mark.parametrize("code", list(ErrorCode))
def test_failures_on_the_wire(code: ErrorCode) -> None:
    metrics = Metrics(duration_sec=2.0, timings=Timings(download_s=0.5, denoise_s=1.0, total_s=2.0))
    result = JobResult.failure(code, "it broke", job_id="j1", metrics=metrics, stage="inference")
    wire = result_to_wire(result)
    expected_status = "cancelled" if code is ErrorCode.CANCELLED else "failed"
    metrics_wire = {
        "duration_sec": 2.0,
        "timings": {"download_s": 0.5, "denoise_s": 1.0, "total_s": 2.0},
        "total_time": 2.0,
        "stage_times": {"download": 0.5, "inference": 1.0},
    }
    assert wire == {
        "status": expected_status,
        "metrics": metrics_wire,
        "error": "it broke",
        "error_code": code.value,
        "retryable": code.retryable,
        # the sibling's names, beside ours
        "musetalk_job_id": "j1",
        "error_message": "it broke",
        "error_type": SIBLING_ERROR_TYPE[code.value],
        "stage": "inference",
        "stage_times": {"download": 0.5, "inference": 1.0},
    }
    assert result_from_wire(wire) == result
    assert progress_to_wire(result.progress_update("w1")) == {
        "status": expected_status,
        "error": "it broke",
        "error_code": code.value,
        "worker_id": "w1",
        "metrics": metrics_wire,
    }


@pytest.mark.parametrize(
    ("code", "stage", "error_type"),
    [
        (ErrorCode.INVALID_INPUT, "validation", "media_error"),  # refused before it ran
        (ErrorCode.INTERNAL_ERROR, "unknown", "unknown_error"),
        (None, "unknown", "processing_error"),  # a refusal without a code (not ready)
    ],
)
def test_a_failure_without_a_stage_or_metrics_still_carries_the_sibling_names(
    code: ErrorCode | None, stage: str, error_type: str
) -> None:
    wire = result_to_wire(JobResult(status=JobState.FAILED, error="no", error_code=code, retryable=True))
    assert "musetalk_job_id" not in wire  # not known
    assert wire["error_message"] == "no"
    assert (wire["error_type"], wire["stage"], wire["stage_times"]) == (error_type, stage, {})


def test_an_adapter_may_override_retryable_and_fatal_is_never_sent() -> None:
    result = JobResult.failure(ErrorCode.IMAGE_FETCH_FAILED, "404", retryable=False, fatal=True)
    assert result_to_wire(result)["retryable"] is False
    assert "fatal" not in result_to_wire(result)


def test_a_result_is_terminal() -> None:
    with pytest.raises(ValueError, match="must be terminal"):
        JobResult(status=JobState.RUNNING)


def test_progress_update_shapes() -> None:
    running = ProgressUpdate(
        status=JobState.RUNNING, phase=Phase.INFERENCE, progress=0.5, step=2, total_steps=3
    )
    assert progress_to_wire(running) == {
        "status": "running",
        "phase": "inference",
        "progress": 0.5,
        "step": 2,
        "total_steps": 3,
    }
    done = JobResult(status=JobState.SUCCEEDED, output_url="u").progress_update()
    assert progress_to_wire(done) == {"status": "succeeded", "progress": 1.0, "output_url": "u"}
