"""The encoder's streaming session and the choice of codec (``FASTWAN_ENCODER``), for real.

NVENC cannot open on this machine (no NVIDIA encoder: FFmpeg's ``avcodec_open2`` answers
``PermissionError``), which is exactly the failing open the fallback exists for; a machine
with NVENC is played by a probe that says it opens.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from fastwan_adapters.config import ConfigError
from fastwan_adapters.encoder import (
    EncoderOpenError,
    EncoderSettings,
    FallbackEncoder,
    PyAVEncoder,
    build_encoder,
    nvenc_problem,
)
from fastwan_core import ErrorCode, JobFailure, Size
from tests.adapters.test_encoder import decode, encode, smooth_scene

SIZE = Size(96, 64)


def chunks_of(frames: np.ndarray) -> list[np.ndarray]:
    """As the Wan decoder gives them: one frame, then four at a time."""
    return [frames[:1], *(frames[start : start + 4] for start in range(1, len(frames), 4))]


def test_a_streamed_video_is_byte_for_byte_the_one_of_a_single_chunk() -> None:
    frames = smooth_scene(13, SIZE)
    encoder = PyAVEncoder(x264_params="mbtree=0")  # mbtree alone makes libx264 non-reproducible
    session = encoder.open(SIZE, 24)
    for chunk in chunks_of(frames):
        session.add(chunk)
    streamed = session.finish()

    batch = encode(encoder, frames, SIZE, 24)
    assert streamed.data == batch.data
    assert (streamed.size, streamed.encoder) == (SIZE, "libx264")
    assert streamed.encoding_s is not None and streamed.encoding_s > 0
    assert decode(streamed.data).frames.shape == (13, 64, 96, 3)


def test_the_decoder_waits_for_a_slow_encoder_instead_of_queueing_everything(tmp_path: Path) -> None:
    encoder = PyAVEncoder(queue_chunks=1, temp_dir=tmp_path)
    session = encoder.open(SIZE, 24)
    added = threading.Event()
    frames = smooth_scene(40, SIZE)

    def feed() -> None:
        for chunk in chunks_of(frames):
            session.add(chunk)
        added.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    feeder.join(30)
    assert added.is_set()
    video = session.finish()
    assert decode(video.data).frames.shape[0] == 40
    assert list(tmp_path.iterdir()) == []


def test_an_aborted_session_keeps_nothing_and_refuses_more(tmp_path: Path) -> None:
    session = PyAVEncoder(temp_dir=tmp_path).open(SIZE, 24)
    session.add(smooth_scene(5, SIZE))

    session.abort()
    session.abort()  # idempotent

    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="aborted"):
        session.add(smooth_scene(1, SIZE))


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        (np.zeros((2, 64, 96, 3), np.float32), "uint8"),
        (np.zeros((2, 64, 96), np.uint8), "shaped"),
        (np.zeros((2, 32, 96, 3), np.uint8), "unlike the earlier frames"),
    ],
)
def test_a_bad_chunk_is_a_non_retryable_internal_error(chunk: np.ndarray, message: str) -> None:
    session = PyAVEncoder().open(SIZE, 24)
    session.add(smooth_scene(1, SIZE))
    try:
        with pytest.raises(JobFailure, match=message) as raised:
            session.add(chunk)
    finally:
        session.abort()
    assert (raised.value.code, raised.value.retryable) == (ErrorCode.INTERNAL_ERROR, False)


def test_a_session_one_frame_short_is_refused() -> None:
    session = PyAVEncoder().open(SIZE, 24)
    session.add(smooth_scene(3, SIZE))
    session._frames += 1  # as if a chunk had been counted but never encoded

    with pytest.raises(JobFailure, match="wrote 3 of 4 frames"):
        session.finish()


# -- FASTWAN_ENCODER ---------------------------------------------------------------------------


def test_nvenc_cannot_open_here_and_the_probe_says_why() -> None:
    problem = nvenc_problem()

    assert problem is not None and "PermissionError" in problem
    with pytest.raises(EncoderOpenError, match="h264_nvenc cannot open"):
        PyAVEncoder(codec="h264_nvenc").open(SIZE, 24)


def test_libx264_is_used_without_probing() -> None:
    def probe() -> str | None:
        raise AssertionError("libx264 needs no probe")

    encoder = build_encoder(EncoderSettings(encoder="libx264"), probe)

    assert isinstance(encoder, PyAVEncoder) and encoder.codec == "libx264"


def test_auto_without_nvenc_is_libx264_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        encoder = build_encoder(EncoderSettings.from_env({}))

    assert isinstance(encoder, PyAVEncoder) and encoder.codec == "libx264"
    assert [r.message for r in caplog.records if "h264_nvenc cannot open" in r.message] != []
    assert encode(encoder, smooth_scene(2, SIZE), SIZE, 24).encoder == "libx264"


def test_an_explicit_nvenc_that_cannot_open_is_a_startup_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="FASTWAN_ENCODER=h264_nvenc cannot be used here"):
        build_encoder(EncoderSettings.from_env({"FASTWAN_ENCODER": "h264_nvenc"}))


def test_a_bad_choice_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="FASTWAN_ENCODER"):
        EncoderSettings.from_env({"FASTWAN_ENCODER": "x265"})


@pytest.mark.parametrize("choice", ["auto", "h264_nvenc"])
def test_where_nvenc_opens_it_is_chosen_and_a_later_failing_open_falls_back_for_good(
    choice: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The probe says NVENC opens (a GPU with an encoder); here every real open then fails.
    encoder = build_encoder(EncoderSettings.from_env({"FASTWAN_ENCODER": choice}), probe=lambda: None)
    assert isinstance(encoder, FallbackEncoder) and encoder.codec == "h264_nvenc"

    with caplog.at_level(logging.WARNING):
        session = encoder.open(SIZE, 24)
        session.add(smooth_scene(3, SIZE))
        first = session.finish()
        second = encode(encoder, smooth_scene(3, SIZE), SIZE, 24)

    assert (first.encoder, second.encoder, encoder.codec) == ("libx264", "libx264", "libx264")
    assert len([r for r in caplog.records if "h264_nvenc cannot open" in r.message]) == 1
    assert decode(first.data).codec == "h264" and decode(first.data).pix_fmt == "yuv420p"
