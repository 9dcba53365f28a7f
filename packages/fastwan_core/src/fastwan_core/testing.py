"""A fake for every port, for this project's tests and for other services' tests.

Each fake records what it was asked and can be told to fail. None does I/O; time is the
:class:`FakeClock`'s, so tests of timings and throttling are exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from fastwan_core.errors import JobFailure
from fastwan_core.plan import GenerationPlan
from fastwan_core.ports import (
    EncodedVideo,
    Frames,
    FrameSink,
    GeneratedVideo,
    GenerationEvents,
    Picture,
    Stage,
)
from fastwan_core.results import ProgressUpdate
from fastwan_core.values import ImageSource, Size

__all__ = [
    "FakeClock",
    "FakeEncoder",
    "FakeEncodingSession",
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
        frames_per_chunk: the frames of each decoded chunk after the first, which has one (as
            the Wan VAE decodes: one latent frame, then four per latent).
        on_chunk: called after each chunk went into the sink, with its index (1-based).
    """

    clock: FakeClock | None = None
    seconds_per_step: float = 0.0
    failure: BaseException | None = None
    fail_at_step: int = 0
    on_step: Any = None
    frames_per_chunk: int = 4
    on_chunk: Any = None
    peak_vram_gb: float = 1.5
    vae_decoder: str | None = "full"
    prompt_cache: str | None = None
    model_id: str = "fake/fastwan"
    device_name: str = "FakeGPU"
    attention: str | None = None
    vsa_sparsity: float | None = None
    calls: list[tuple[GenerationPlan, Picture | None]] = attrs.field(factory=list)
    steps_run: list[int] = attrs.field(factory=list)
    chunks_decoded: list[int] = attrs.field(factory=list)

    def generate(
        self,
        plan: GenerationPlan,
        image: Picture | None,
        events: GenerationEvents,
        sink: FrameSink,
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
        self._stream(FakeFrames(plan.num_frames, plan.generated_size, plan.seed), events, sink)
        return GeneratedVideo(
            self.peak_vram_gb,
            attention=self.attention,
            vsa_sparsity=self.vsa_sparsity,
            vae_decoder=self.vae_decoder,
            prompt_cache=self.prompt_cache,
        )

    def _stream(self, frames: FakeFrames, events: GenerationEvents, sink: FrameSink) -> None:
        """The chunks, a cancellation check before each (as the real one)."""
        counts = [1]
        while sum(counts) < frames.count:
            counts.append(min(self.frames_per_chunk, frames.count - sum(counts)))
        for index, count in enumerate(counts, start=1):
            events.check_cancelled()
            sink.add(FakeFrames(count, frames.size, frames.seed))
            self.chunks_decoded.append(index)
            if self.on_chunk is not None:
                self.on_chunk(index)

    def _spend(self) -> None:
        if self.clock is not None:
            self.clock.advance(self.seconds_per_step)


@attrs.define
class FakeEncoder:
    """Makes a small, deterministic stand-in for an MP4 from the frames' description.

    The same bytes for the same frames however chunked; its ``seconds`` are spent at
    ``finish``, as the encoding left after the last chunk.

    Attributes:
        encoded: each video finished: its frame count, size and fps.
        sessions: every session opened, in order (what each was given, how it ended).
    """

    failure: JobFailure | None = None
    clock: FakeClock | None = None
    seconds: float = 0.0
    name: str = "fake-h264"
    encoded: list[tuple[int, Size, int]] = attrs.field(factory=list)
    #: the ``cover`` flag of each call, in order
    covers: list[bool] = attrs.field(factory=list)
    sessions: list[FakeEncodingSession] = attrs.field(factory=list)

    def open(self, size: Size, fps: int, *, cover: bool = False) -> FakeEncodingSession:
        session = FakeEncodingSession(self, size, fps, cover)
        self.sessions.append(session)
        return session


@attrs.define
class FakeEncodingSession:
    """One streamed video of a :class:`FakeEncoder`.

    Attributes:
        chunks: the frame count of each chunk added.
        state: ``open``, ``finished`` or ``aborted``.
    """

    encoder: FakeEncoder
    size: Size
    fps: int
    cover: bool = False
    chunks: list[int] = attrs.field(factory=list)
    state: str = "open"

    def add(self, frames: Frames) -> None:
        if self.state != "open":
            raise RuntimeError(f"frames added to a {self.state} session")
        self.chunks.append(len(frames))

    def finish(self) -> EncodedVideo:
        if self.state != "open":
            raise RuntimeError(f"finish on a {self.state} session")
        self.state = "finished"
        encoder, count, size = self.encoder, sum(self.chunks), self.size
        if encoder.clock is not None:
            encoder.clock.advance(encoder.seconds)
        if encoder.failure is not None:
            raise encoder.failure
        encoder.encoded.append((count, size, self.fps))
        encoder.covers.append(self.cover)
        data = f"fake-mp4 {count} frames {size} @{self.fps}".encode()
        return EncodedVideo(data, size, encoder=encoder.name, encoding_s=encoder.seconds)

    def abort(self) -> None:
        if self.state == "open":
            self.state = "aborted"


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
