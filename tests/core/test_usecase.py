"""The generate-video use case, run through the fakes of every port."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from fastwan_core import (
    Cancellation,
    ErrorCode,
    GenerateVideo,
    JobFailure,
    JobResult,
    JobState,
    JobValidationError,
    Phase,
    WorkerInfo,
    parse_job,
    result_to_wire,
)
from fastwan_core.testing import (
    FakeClock,
    FakeEncoder,
    FakeGenerator,
    FakeImageLoader,
    InMemoryResultStore,
    RecordingProgressReporter,
)

T2V = {
    "musetalk_job_id": "t2v-1",
    "prompt": "a fox in the snow",
    "width": 512,
    "height": 512,
    "num_frames": 9,
}
I2V = {**T2V, "musetalk_job_id": "i2v-1", "image_url": "https://images.example/face.png"}


@attrs.define
class World:
    clock: FakeClock
    images: FakeImageLoader
    generator: FakeGenerator
    encoder: FakeEncoder
    store: InMemoryResultStore
    progress: RecordingProgressReporter
    usecase: GenerateVideo


@pytest.fixture
def world() -> World:
    clock = FakeClock()
    images = FakeImageLoader(clock=clock, seconds=0.4)
    generator = FakeGenerator(clock=clock, seconds_per_step=0.6)
    encoder = FakeEncoder(clock=clock, seconds=0.3)
    store = InMemoryResultStore(clock=clock, seconds=0.2)
    progress = RecordingProgressReporter()
    usecase = GenerateVideo(
        images,
        generator,
        encoder,
        store,
        progress,
        clock,
        WorkerInfo("w-1", "9.9.9"),
        progress_interval_s=1.0,
    )
    return World(clock, images, generator, encoder, store, progress, usecase)


def test_text_to_video_succeeds(world: World) -> None:
    result = world.usecase.run(parse_job(T2V))
    assert result.status is JobState.SUCCEEDED
    assert result.output_url == "memory://t2v-1.mp4"
    assert world.images.loaded == []
    assert world.store.metadata["t2v-1.mp4"] == {"job_id": "t2v-1", "seed": "42", "model": "fake/fastwan"}
    assert world.encoder.encoded == [(9, world.generator.calls[0][0].output_size, 24)]
    metrics = result.metrics
    assert metrics is not None
    timings = metrics.timings
    assert timings.download_s is None  # not run
    assert (timings.text_encode_s, timings.denoise_s, timings.decode_s) == (0.6, 1.8, 0.6)
    assert (timings.encode_s, timings.upload_s, timings.total_s) == (0.3, 0.2, 3.5)
    assert metrics.duration_sec == 3.5
    assert metrics.steps == 3 and metrics.num_frames == 9 and metrics.video_fps == 24
    assert metrics.size_bytes == len(world.store.objects["t2v-1.mp4"].data)
    assert metrics.sha1 == world.store.objects["t2v-1.mp4"].sha1
    assert (metrics.worker_id, metrics.worker_version, metrics.gpu_name) == ("w-1", "9.9.9", "FakeGPU")
    assert metrics.fps == round(9 / 3.5, 4)


def test_image_to_video_loads_the_image_first(world: World) -> None:
    result = world.usecase.run(parse_job(I2V))
    assert result.succeeded
    assert [source.url for source in world.images.loaded] == ["https://images.example/face.png"]
    assert world.generator.calls[0][1] is world.images.picture
    assert result.metrics is not None and result.metrics.timings.download_s == 0.4
    phases = [u.phase for u in world.progress.for_job("i2v-1") if u.phase is not None]
    assert phases[0] is Phase.DOWNLOADING


def test_progress_is_monotonic_throttled_and_covers_every_phase(world: World) -> None:
    world.generator.seconds_per_step = 0.25  # four steps' worth inside one second
    world.usecase.run(parse_job(I2V))
    updates = world.progress.for_job("i2v-1")
    values = [u.progress for u in updates]
    assert values == sorted(values)
    assert all(v is not None and 0.0 <= v <= 1.0 for v in values)
    assert updates[-1].status is JobState.SUCCEEDED and updates[-1].progress == 1.0
    running = [u for u in updates if u.status is JobState.RUNNING]
    assert {u.phase for u in running} == set(Phase)
    # Phase changes always go out; within a phase at most one a second.
    phase_changes = [u for i, u in enumerate(running) if i == 0 or u.phase is not running[i - 1].phase]
    assert len(phase_changes) == len(Phase)
    step_reports = [u.step for u in running if u.step is not None]
    assert len(step_reports) < 3  # three steps in 0.75 s: throttled
    assert all(u.worker_id == "w-1" for u in updates)


def test_unthrottled_every_step_is_reported_in_order(world: World) -> None:
    world.usecase.progress_interval_s = 0.0
    world.usecase.run(parse_job(T2V))
    steps = [(u.step, u.total_steps) for u in world.progress.for_job("t2v-1") if u.step is not None]
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_cancellation_in_the_middle_of_generation(world: World) -> None:
    cancel = Cancellation()
    world.generator.on_step = lambda index: cancel.cancel() if index == 1 else None
    result = world.usecase.run(parse_job(T2V), cancel)
    assert result.status is JobState.CANCELLED
    assert (result.error_code, result.retryable) == (ErrorCode.CANCELLED, False)
    assert world.generator.steps_run == [1]  # stopped before step 2
    assert world.encoder.encoded == [] and world.store.objects == {}  # uploads nothing
    assert world.progress.for_job("t2v-1")[-1].status is JobState.CANCELLED


def test_cancelled_after_generation_uploads_nothing(world: World) -> None:
    cancel = Cancellation()
    world.generator.on_step = lambda index: cancel.cancel() if index == 3 else None
    result = world.usecase.run(parse_job(T2V), cancel)
    assert result.status is JobState.CANCELLED and world.store.objects == {}


def failing(code: ErrorCode, **kwargs: Any) -> JobFailure:
    return JobFailure(code, f"{code.value} happened", **kwargs)


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ("images", ErrorCode.IMAGE_FETCH_FAILED),
        ("images", ErrorCode.INVALID_INPUT),
        ("generator", ErrorCode.GPU_OUT_OF_MEMORY),
        ("generator", ErrorCode.GENERATION_FAILED),
        ("encoder", ErrorCode.GENERATION_FAILED),
        ("store", ErrorCode.UPLOAD_FAILED),
        ("generator", ErrorCode.WORKER_SHUTDOWN),
        ("generator", ErrorCode.INTERNAL_ERROR),
        ("generator", ErrorCode.CANCELLED),
    ],
)
def test_each_error_code_is_reported(world: World, where: str, code: ErrorCode) -> None:
    port = getattr(world, where)
    port.failure = failing(code)
    if where == "generator":
        port.fail_at_step = 2
    result = world.usecase.run(parse_job(I2V))
    assert result.error_code is code
    assert result.retryable is code.retryable
    assert result.error == f"{code.value} happened"
    assert result.status is (JobState.CANCELLED if code is ErrorCode.CANCELLED else JobState.FAILED)
    last = world.progress.for_job("i2v-1")[-1]
    assert last.error_code is code and last.status is result.status
    assert result.metrics is not None and result.metrics.timings.total_s is not None
    assert world.store.objects == {}
    # The phase it failed in, for the orchestrator's `stage`; the final progress has metrics.
    assert result.stage == {"images": "download", "generator": "inference", "encoder": "encode"}.get(
        where, "upload"
    )
    assert last.metrics == result.metrics


@pytest.mark.parametrize(
    ("payload", "cover"),
    [({"width": 720, "height": 1280}, True), ({"width": 704, "height": 1280}, False), ({}, False)],
)
def test_the_encoder_is_told_to_cover_when_a_trained_size_stands_in(
    world: World, payload: dict[str, int], cover: bool
) -> None:
    result = world.usecase.run(parse_job({**T2V, **payload}))
    plan = world.generator.calls[0][0]
    assert world.encoder.covers == [cover] and plan.cover is cover
    assert result.metrics is not None and result.metrics.output_size == plan.output_size


def test_metrics_carry_the_gpu_class_and_the_sibling_timing_names(world: World) -> None:
    result = world.usecase.run(parse_job(I2V))
    assert result.metrics is not None and result.metrics.gpu_class == "FakeGPU"  # GPU_CLASS unset
    wire = result_to_wire(result)
    assert wire["musetalk_job_id"] == "i2v-1"
    assert wire["metrics"]["total_time"] == wire["metrics"]["duration_sec"] == 3.9
    assert wire["metrics"]["stage_times"] == {
        "download": 0.4,
        "text_encode": 0.6,
        "inference": 1.8,
        "decode": 0.6,
        "encode": 0.3,
        "upload": 0.2,
    }
    assert world.progress.for_job("i2v-1")[-1].metrics == result.metrics
    world.usecase.worker = WorkerInfo("w-1", "9.9.9", gpu_class="RTX-5090-FastWan")
    again = world.usecase.run(parse_job(I2V))
    assert again.metrics is not None and again.metrics.gpu_class == "RTX-5090-FastWan"


def refused(world: World, payload: dict[str, Any]) -> JobResult:
    """The use case's answer to ``payload``, which must not parse."""
    with pytest.raises(JobValidationError) as caught:
        parse_job(payload)
    return world.usecase.refuse(caught.value)


def test_invalid_input_is_reported_without_running(world: World) -> None:
    result = refused(world, {**T2V, "width": 2000})
    assert (result.status, result.error_code, result.retryable) == (
        JobState.FAILED,
        ErrorCode.INVALID_INPUT,
        False,
    )
    assert result.error == "width must be between 256 and 1280, got 2000"
    assert world.generator.calls == []
    wire = result_to_wire(result)
    assert (wire["musetalk_job_id"], wire["stage"], wire["error_type"]) == (
        "t2v-1",
        "validation",
        "media_error",
    )
    assert [u.error_code for u in world.progress.for_job("t2v-1")] == [ErrorCode.INVALID_INPUT]


def test_invalid_input_without_a_readable_id_reports_nothing(world: World) -> None:
    result = refused(world, {"prompt": "p"})
    assert result.error_code is ErrorCode.INVALID_INPUT
    assert world.progress.updates == []


def test_an_adapter_may_say_a_failure_is_not_retryable_or_fatal(world: World) -> None:
    world.images.failure = failing(ErrorCode.IMAGE_FETCH_FAILED, retryable=False)
    assert world.usecase.run(parse_job(I2V)).retryable is False
    world.images.failure = None
    world.generator.failure = failing(ErrorCode.GENERATION_FAILED, retryable=True, fatal=True)
    result = world.usecase.run(parse_job(I2V))
    assert result.fatal and result.retryable


def test_an_unexpected_exception_is_internal_error_never_a_crash(world: World) -> None:
    world.encoder.failure = None
    world.generator.failure = KeyError("boom")
    world.generator.fail_at_step = 2
    result = world.usecase.run(parse_job(T2V))
    assert (result.error_code, result.retryable) == (ErrorCode.INTERNAL_ERROR, True)
    assert result.error == "internal error during inference: KeyError"


def test_a_broken_progress_reporter_never_fails_the_job(world: World) -> None:
    world.progress.failure = ConnectionError("orchestrator down")
    result = world.usecase.run(parse_job(T2V))
    assert result.succeeded
    assert len(world.progress.updates) > 3


def test_timings_present_for_every_stage_run_and_partial_on_failure(world: World) -> None:
    world.store.failure = failing(ErrorCode.UPLOAD_FAILED)
    result = world.usecase.run(parse_job(I2V))
    assert result.metrics is not None
    timings = result.metrics.timings
    assert None not in (timings.download_s, timings.text_encode_s, timings.denoise_s, timings.decode_s)
    assert timings.encode_s == 0.3 and timings.upload_s == 0.2
    assert result.metrics.size_bytes is not None  # encoded before the upload failed


def test_metrics_report_the_size_the_encoder_delivered(world: World) -> None:
    class OddSizeEncoder(FakeEncoder):
        def open(self, size: Any, fps: int, *, cover: bool = False) -> Any:
            return super().open(type(size)(size.width - 1, size.height), fps, cover=cover)

    world.usecase.encoder = OddSizeEncoder()
    result = world.usecase.run(parse_job({**T2V, "width": 513}))
    assert result.metrics is not None and result.metrics.output_size is not None
    assert result.metrics.output_size.as_list() == [512, 512]


def test_a_job_stopped_for_a_shutdown_fails_retryably(world: World) -> None:
    cancel = Cancellation()
    world.generator.on_step = lambda index: cancel.cancel(ErrorCode.WORKER_SHUTDOWN) if index == 1 else None
    result = world.usecase.run(parse_job(T2V), cancel)
    assert (result.status, result.error_code, result.retryable) == (
        JobState.FAILED,
        ErrorCode.WORKER_SHUTDOWN,
        True,
    )
    assert result.error == "the worker is shutting down: the job was stopped before it finished"
    assert world.generator.steps_run == [1] and world.store.objects == {}
    last = world.progress.for_job("t2v-1")[-1]
    assert (last.status, last.error_code) == (JobState.FAILED, ErrorCode.WORKER_SHUTDOWN)


def test_the_first_reason_to_stop_wins() -> None:
    cancel = Cancellation()
    assert cancel.cancel(ErrorCode.CANCELLED, "the orchestrator cancelled it")
    assert not cancel.cancel(ErrorCode.WORKER_SHUTDOWN)
    assert (cancel.code, cancel.message, cancel.is_set()) == (
        ErrorCode.CANCELLED,
        "the orchestrator cancelled it",
        True,
    )


def test_metrics_say_which_attention_ran_and_leave_it_out_when_unknown(world: World) -> None:
    plain = result_to_wire(world.usecase.run(parse_job(T2V)))["metrics"]
    assert "attention" not in plain and "vsa_sparsity" not in plain

    world.generator.attention, world.generator.vsa_sparsity = "vsa", 0.8
    metrics = result_to_wire(world.usecase.run(parse_job(T2V)))["metrics"]
    assert (metrics["attention"], metrics["vsa_sparsity"]) == ("vsa", 0.8)

    world.generator.attention, world.generator.vsa_sparsity = "dense", None
    metrics = result_to_wire(world.usecase.run(parse_job(T2V)))["metrics"]
    assert metrics["attention"] == "dense" and "vsa_sparsity" not in metrics
