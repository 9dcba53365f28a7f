"""A fake for every port, for this project's tests and for other services' tests.

Each fake records what it was asked and can be told to fail. None does I/O; time is the
:class:`FakeClock`'s, so tests of timings and throttling are exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from fastwan_core.errors import JobFailure
from fastwan_core.job import ImageSource, Size
from fastwan_core.plan import GenerationPlan
from fastwan_core.ports import EncodedVideo, Frames, GeneratedVideo, GenerationEvents, Picture, Stage
from fastwan_core.results import ProgressUpdate

__all__ = [
    "FakeClock",
    "FakeEncoder",
    "FakeFrames",
    "FakeGenerator",
    "FakeImageLoader",
    "FakePicture",
    "InMemoryResultStore",
    "RecordingProgressReporter",
]


@attrs.define
class FakeClock:
    """A clock that moves only when told to (``advance``), or by ``tick`` on every read."""

    time: float = 0.0
    tick: float = 0.0

    def now(self) -> float:
        self.time += self.tick
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


@attrs.frozen
class FakePicture:
    size: tuple[int, int] = (64, 64)


@attrs.frozen
class FakeFrames:
    """Frames as the fake generator makes them: a count and a size, no pixels."""

    count: int
    size: Size
    seed: int = 0

    def __len__(self) -> int:
        return self.count


@attrs.define
class FakeImageLoader:
    picture: Picture = attrs.field(factory=FakePicture)
    failure: JobFailure | None = None
    clock: FakeClock | None = None
    seconds: float = 0.0
    loaded: list[ImageSource] = attrs.field(factory=list)

    def load(self, source: ImageSource) -> Picture:
        self.loaded.append(source)
        if self.clock is not None:
            self.clock.advance(self.seconds)
        if self.failure is not None:
            raise self.failure
        return self.picture


@attrs.define
class FakeGenerator:
    """Walks through the stages and steps of the plan as a real generator would.

    Attributes:
        seconds_per_step: how far each step moves ``clock`` (if one is given).
        failure, fail_at_step: raise ``failure`` before step ``fail_at_step`` (1-based; 0
            means during text encoding).
        on_step: called after each step with its index, e.g. to cancel mid-generation.
    """

    clock: FakeClock | None = None
    seconds_per_step: float = 0.0
    failure: BaseException | None = None
    fail_at_step: int = 0
    on_step: Any = None
    peak_vram_gb: float = 1.5
    model_id: str = "fake/fastwan"
    device_name: str = "FakeGPU"
    attention: str | None = None
    vsa_sparsity: float | None = None
    calls: list[tuple[GenerationPlan, Picture | None]] = attrs.field(factory=list)
    steps_run: list[int] = attrs.field(factory=list)

    def generate(
        self, plan: GenerationPlan, image: Picture | None, events: GenerationEvents
    ) -> GeneratedVideo:
        self.calls.append((plan, image))
        events.stage(Stage.TEXT_ENCODE)
        self._spend()
        if self.failure is not None and self.fail_at_step == 0:
            raise self.failure
        events.stage(Stage.DENOISE)
        total = len(plan.timesteps)
        for index in range(1, total + 1):
            events.check_cancelled()
            if self.failure is not None and self.fail_at_step == index:
                raise self.failure
            self._spend()
            self.steps_run.append(index)
            events.step(index, total)
            if self.on_step is not None:
                self.on_step(index)
        events.stage(Stage.DECODE)
        self._spend()
        frames = FakeFrames(plan.num_frames, plan.generated_size, plan.seed)
        return GeneratedVideo(frames, self.peak_vram_gb, self.attention, self.vsa_sparsity)

    def _spend(self) -> None:
        if self.clock is not None:
            self.clock.advance(self.seconds_per_step)


@attrs.define
class FakeEncoder:
    """Makes a small, deterministic stand-in for an MP4 from the frames' description."""

    failure: JobFailure | None = None
    clock: FakeClock | None = None
    seconds: float = 0.0
    encoded: list[tuple[int, Size, int]] = attrs.field(factory=list)
    #: the ``cover`` flag of each call, in order
    covers: list[bool] = attrs.field(factory=list)

    def encode(self, frames: Frames, size: Size, fps: int, *, cover: bool = False) -> EncodedVideo:
        if self.clock is not None:
            self.clock.advance(self.seconds)
        if self.failure is not None:
            raise self.failure
        self.encoded.append((len(frames), size, fps))
        self.covers.append(cover)
        return EncodedVideo(f"fake-mp4 {len(frames)} frames {size} @{fps}".encode(), size)


@attrs.define
class InMemoryResultStore:
    """Keeps what it is given; URLs are ``memory://{name}``."""

    failure: JobFailure | None = None
    clock: FakeClock | None = None
    seconds: float = 0.0
    objects: dict[str, EncodedVideo] = attrs.field(factory=dict)
    metadata: dict[str, dict[str, str]] = attrs.field(factory=dict)

    def put(self, name: str, video: EncodedVideo, metadata: Mapping[str, str]) -> str:
        if self.clock is not None:
            self.clock.advance(self.seconds)
        if self.failure is not None:
            raise self.failure
        self.objects[name] = video
        self.metadata[name] = dict(metadata)
        return f"memory://{name}"


@attrs.define
class RecordingProgressReporter:
    """Records every update; with ``failure`` set it raises it, as a broken adapter would."""

    failure: BaseException | None = None
    updates: list[tuple[str, ProgressUpdate]] = attrs.field(factory=list)

    def report(self, job_id: str, update: ProgressUpdate) -> None:
        self.updates.append((job_id, update))
        if self.failure is not None:
            raise self.failure

    def for_job(self, job_id: str) -> list[ProgressUpdate]:
        return [update for recorded_id, update in self.updates if recorded_id == job_id]
