"""The fakes in fastwan_core.testing behave as their ports promise, so other services can rely on them."""

from __future__ import annotations

import pytest

from fastwan_core import (
    Cancellation,
    EncodedVideo,
    ErrorCode,
    ImageSource,
    JobCancelled,
    JobFailure,
    Size,
    Stage,
)
from fastwan_core.plan import GenerationPlan
from fastwan_core.testing import (
    FakeClock,
    FakeEncoder,
    FakeFrames,
    FakeGenerator,
    FakeImageLoader,
    InMemoryResultStore,
    RecordingProgressReporter,
)

PLAN = GenerationPlan(
    prompt="p",
    negative_prompt=None,
    generated_size=Size(256, 256),
    output_size=Size(260, 250),
    num_frames=9,
    fps=24,
    seed=7,
)


class Events:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.log: list[object] = []
        self.cancel_after = cancel_after

    def stage(self, stage: Stage) -> None:
        self.log.append(stage)

    def step(self, index: int, total: int) -> None:
        self.log.append((index, total))

    def check_cancelled(self) -> None:
        if self.cancel_after is not None and sum(isinstance(e, tuple) for e in self.log) >= self.cancel_after:
            raise JobCancelled


class Chunks:
    """A frame sink that keeps what it is given."""

    def __init__(self) -> None:
        self.chunks: list[FakeFrames] = []

    def add(self, frames: FakeFrames) -> None:
        self.chunks.append(frames)


def test_fake_clock() -> None:
    clock = FakeClock(tick=0.5)
    assert (clock.now(), clock.now()) == (0.5, 1.0)
    clock.advance(2)
    assert clock.now() == 3.5


def test_cancellation() -> None:
    flag = Cancellation()
    assert not flag.is_set()
    flag.cancel()
    assert flag.is_set() and flag.code is ErrorCode.CANCELLED


def test_fake_generator_walks_stages_and_steps_like_a_real_one() -> None:
    clock = FakeClock()
    generator = FakeGenerator(clock=clock, seconds_per_step=1.0)
    events = Events()
    sink = Chunks()
    generator.generate(PLAN, None, events, sink)
    assert events.log == [Stage.TEXT_ENCODE, Stage.DENOISE, (1, 3), (2, 3), (3, 3), Stage.DECODE]
    assert {(chunk.size, chunk.seed) for chunk in sink.chunks} == {(Size(256, 256), 7)}
    assert sum(len(chunk) for chunk in sink.chunks) == 9
    assert clock.now() == 5.0


def test_fake_generator_honours_cancellation_and_failure() -> None:
    generator = FakeGenerator()
    with pytest.raises(JobCancelled):
        generator.generate(PLAN, None, Events(cancel_after=2), Chunks())
    assert generator.steps_run == [1, 2]
    failure = JobFailure(ErrorCode.GPU_OUT_OF_MEMORY, "oom")
    with pytest.raises(JobFailure) as caught:
        FakeGenerator(failure=failure, fail_at_step=1).generate(PLAN, None, Events(), Chunks())
    assert caught.value is failure


def test_fake_image_loader() -> None:
    loader = FakeImageLoader()
    assert loader.load(ImageSource(url="http://x")).size == (64, 64)
    loader.failure = JobFailure(ErrorCode.IMAGE_FETCH_FAILED, "404", retryable=False)
    with pytest.raises(JobFailure):
        loader.load(ImageSource(base64="aGk="))
    assert len(loader.loaded) == 2


def test_fake_encoder_and_store_round_trip() -> None:
    session = FakeEncoder().open(Size(260, 250), 24)
    session.add(FakeFrames(9, Size(256, 256)))
    encoded = session.finish()
    assert isinstance(encoded, EncodedVideo) and encoded.size == Size(260, 250)
    store = InMemoryResultStore()
    assert store.put("j.mp4", encoded, {"seed": "7"}) == "memory://j.mp4"
    assert store.objects["j.mp4"].sha1 == encoded.sha1
    store.failure = JobFailure(ErrorCode.UPLOAD_FAILED, "down")
    with pytest.raises(JobFailure):
        store.put("k.mp4", encoded, {})
    assert "k.mp4" not in store.objects


def test_recording_progress_reporter() -> None:
    from fastwan_core import JobState, ProgressUpdate

    reporter = RecordingProgressReporter()
    update = ProgressUpdate(status=JobState.RUNNING, progress=0.1)
    reporter.report("a", update)
    reporter.report("b", update)
    assert reporter.for_job("a") == [update]
