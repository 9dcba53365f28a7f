"""Results, metrics and progress on the wire: exactly the contract's JSON."""

from __future__ import annotations

import pytest

from fastwan_core import ErrorCode, JobResult, JobState, Metrics, Phase, ProgressUpdate, Size, Timings

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
    )
    result = JobResult(
        status=JobState.SUCCEEDED, job_id="j1", output_url="https://f005/file/b/j1.mp4", metrics=metrics
    )
    wire = result.to_wire()
    assert wire == {
        "status": "succeeded",
        "output_url": "https://f005/file/b/j1.mp4",
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
        },
    }
    assert JobResult.from_wire(wire) == JobResult(
        status=JobState.SUCCEEDED, output_url=result.output_url, metrics=metrics
    )


@pytest.mark.parametrize("code", list(ErrorCode))
def test_failures_on_the_wire(code: ErrorCode) -> None:
    result = JobResult.failure(code, "it broke", job_id="j1")
    wire = result.to_wire()
    expected_status = "cancelled" if code is ErrorCode.CANCELLED else "failed"
    assert wire == {
        "status": expected_status,
        "error": "it broke",
        "error_code": code.value,
        "retryable": code.retryable,
    }
    assert result.progress_update("w1").to_wire() == {
        "status": expected_status,
        "error": "it broke",
        "error_code": code.value,
        "worker_id": "w1",
    }


def test_an_adapter_may_override_retryable_and_fatal_is_never_sent() -> None:
    result = JobResult.failure(ErrorCode.IMAGE_FETCH_FAILED, "404", retryable=False, fatal=True)
    assert result.to_wire()["retryable"] is False
    assert "fatal" not in result.to_wire()


def test_a_result_is_terminal() -> None:
    with pytest.raises(ValueError, match="must be terminal"):
        JobResult(status=JobState.RUNNING)


def test_progress_update_shapes() -> None:
    running = ProgressUpdate(
        status=JobState.RUNNING, phase=Phase.INFERENCE, progress=0.5, step=2, total_steps=3
    )
    assert running.to_wire() == {
        "status": "running",
        "phase": "inference",
        "progress": 0.5,
        "step": 2,
        "total_steps": 3,
    }
    done = JobResult(status=JobState.SUCCEEDED, output_url="u").progress_update()
    assert done.to_wire() == {"status": "succeeded", "progress": 1.0, "output_url": "u"}
