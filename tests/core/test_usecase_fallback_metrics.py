"""The metrics of a job that ends without the use case's own result: who ran it, for how long."""

from __future__ import annotations

from fastwan_core import GenerateVideo, Metrics, WorkerInfo
from fastwan_core.testing import (
    FakeClock,
    FakeEncoder,
    FakeGenerator,
    FakeImageLoader,
    InMemoryResultStore,
    RecordingProgressReporter,
)


def usecase(worker: WorkerInfo) -> GenerateVideo:
    return GenerateVideo(
        FakeImageLoader(),
        FakeGenerator(),
        FakeEncoder(),
        InMemoryResultStore(),
        RecordingProgressReporter(),
        FakeClock(),
        worker,
    )


def test_they_name_the_worker_the_model_and_the_gpu_with_the_duration_rounded() -> None:
    metrics = usecase(WorkerInfo("w-1", "1.2.3", gpu_class="RTX 4090")).metrics_for(3.14159265)

    assert metrics == Metrics(
        duration_sec=3.1416,
        model_id="fake/fastwan",
        gpu_name=FakeGenerator().device_name,
        gpu_class="RTX 4090",
        worker_id="w-1",
        worker_version="1.2.3",
    )


def test_a_duration_below_zero_is_zero_and_the_gpu_class_defaults_to_the_device() -> None:
    metrics = usecase(WorkerInfo("w-1")).metrics_for(-0.5)

    assert (metrics.duration_sec, metrics.gpu_class) == (0.0, FakeGenerator().device_name)
