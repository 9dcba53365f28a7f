"""The streaming form in the use case: decoded chunks go into one encoding session, a stop between
chunks ends the job with nothing encoded or stored, and the timings say what overlapped."""

from __future__ import annotations

import pytest

from fastwan_core import (
    Cancellation,
    ErrorCode,
    GenerateVideo,
    JobFailure,
    JobState,
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

T2V = {"musetalk_job_id": "t2v-1", "prompt": "a fox", "width": 512, "height": 512, "num_frames": 17}


def usecase(generator: FakeGenerator, encoder: FakeEncoder, clock: FakeClock) -> GenerateVideo:
    return GenerateVideo(
        FakeImageLoader(),
        generator,
        encoder,
        InMemoryResultStore(),
        RecordingProgressReporter(),
        clock,
        WorkerInfo("w-1", "1"),
    )


def test_the_frames_stream_chunk_by_chunk_into_one_session_with_honest_timings() -> None:
    clock = FakeClock()
    generator = FakeGenerator(clock=clock, seconds_per_step=1.0, prompt_cache="miss")
    encoder = FakeEncoder(clock=clock, seconds=0.25)

    result = usecase(generator, encoder, clock).run(parse_job(T2V))

    assert result.succeeded
    (session,) = encoder.sessions
    assert (session.chunks, session.state) == ([1, 4, 4, 4, 4], "finished")
    assert encoder.encoded == [(17, session.size, 24)]
    assert result.metrics is not None
    timings = result.metrics.timings
    assert timings.decode_s == 1.0  # the chunks' decode
    assert (timings.encode_s, timings.encode_tail_s) == (0.25, 0.25)  # the encoder's time, the wait
    assert (result.metrics.vae_decoder, result.metrics.encoder, result.metrics.prompt_cache) == (
        "full",
        "fake-h264",
        "miss",
    )
    wire = result_to_wire(result)["metrics"]
    assert wire["timings"]["encode_tail_s"] == 0.25
    assert (wire["vae_decoder"], wire["encoder"], wire["prompt_cache"]) == ("full", "fake-h264", "miss")


@pytest.mark.parametrize(
    ("code", "state"),
    [(ErrorCode.CANCELLED, JobState.CANCELLED), (ErrorCode.WORKER_SHUTDOWN, JobState.FAILED)],
)
def test_a_stop_during_decode_takes_effect_at_the_next_chunk_and_nothing_is_kept(
    code: ErrorCode, state: JobState
) -> None:
    clock, cancel = FakeClock(), Cancellation()
    generator = FakeGenerator(on_chunk=lambda index: cancel.cancel(code) if index == 2 else None)
    encoder = FakeEncoder(clock=clock)
    world = usecase(generator, encoder, clock)

    result = world.run(parse_job(T2V), cancel)

    assert (result.status, result.error_code) == (state, code)
    assert generator.chunks_decoded == [1, 2]  # the stop came during chunk 2: chunk 3 never ran
    (session,) = encoder.sessions
    assert session.state == "aborted" and encoder.encoded == []
    assert isinstance(world.store, InMemoryResultStore) and world.store.objects == {}


def test_a_stop_before_decode_never_opens_an_encoder() -> None:
    clock, cancel = FakeClock(), Cancellation()
    generator = FakeGenerator(on_step=lambda index: cancel.cancel() if index == 3 else None)
    encoder = FakeEncoder(clock=clock)

    result = usecase(generator, encoder, clock).run(parse_job(T2V), cancel)

    assert result.status is JobState.CANCELLED
    assert generator.chunks_decoded == [] and encoder.sessions == []


def test_an_encoder_that_fails_mid_stream_fails_the_job_and_the_session_is_aborted() -> None:
    clock = FakeClock()
    encoder = FakeEncoder(clock=clock)

    def fail_at_chunk(index: int) -> None:
        if index == 2:
            encoder.sessions[0].state = "broken"

    generator = FakeGenerator(on_chunk=fail_at_chunk)
    result = usecase(generator, encoder, clock).run(parse_job(T2V))

    assert result.status is JobState.FAILED
    assert generator.chunks_decoded == [1, 2]


def test_an_encoder_failure_at_finish_is_reported_with_its_code() -> None:
    clock = FakeClock()
    encoder = FakeEncoder(clock=clock, failure=JobFailure(ErrorCode.INTERNAL_ERROR, "x264 broke"))

    result = usecase(FakeGenerator(), encoder, clock).run(parse_job(T2V))

    assert (result.status, result.error_code, result.error) == (
        JobState.FAILED,
        ErrorCode.INTERNAL_ERROR,
        "x264 broke",
    )
