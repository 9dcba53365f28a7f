"""PyAVEncoder, for real: every MP4 it makes is decoded back with PyAV and checked.

The source frames are an analytic pattern (smooth gradients and sinusoids of the normalised
coordinates, moving with time), so the same scene can be rendered at any size: that is the
ground truth a resized video is compared with.
"""

from __future__ import annotations

import io
import math
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import av
import numpy as np
import pytest

from fastwan_adapters.encoder import PyAVEncoder, cover_window, deliverable_size
from fastwan_core import ErrorCode, JobFailure, Size
from fastwan_core.ports import EncodedVideo, VideoEncoder

# What a 4:2:0 H.264 encode of this smooth scene keeps, with a margin (measured 41 to 44 dB).
MIN_PSNR_DB = 38.0


def smooth_scene(
    num_frames: int, size: Size, window: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
) -> np.ndarray:
    """``(num_frames, height, width, 3)`` uint8 RGB: gradients and slow waves, drifting.

    ``window`` (``x0, y0, x1, y1`` in the scene's normalised coordinates) renders only that
    part of the scene, stretched over ``size``: what a crop of the whole scene should show.
    """
    x0, y0, x1, y1 = window
    y = y0 + (y1 - y0) * (np.arange(size.height, dtype=np.float64)[:, None] + 0.5) / size.height
    x = x0 + (x1 - x0) * (np.arange(size.width, dtype=np.float64)[None, :] + 0.5) / size.width
    frames = np.empty((num_frames, size.height, size.width, 3), dtype=np.uint8)
    for t in range(num_frames):
        shift = t / 24
        red = 60 + 120 * x + 30 * np.sin(2 * math.pi * (2 * y + shift))
        green = 50 + 110 * y + 30 * np.cos(2 * math.pi * (3 * x - shift))
        blue = 128 + 70 * np.sin(2 * math.pi * (x + y + shift))
        frames[t] = np.clip(np.stack([red, green, blue], axis=-1) + 0.5, 0, 255).astype(np.uint8)
    return frames


def encode(
    encoder: VideoEncoder, frames: np.ndarray, size: Size, fps: int, *, cover: bool = False
) -> EncodedVideo:
    """``frames`` encoded through the port's one form: a session given them in one chunk."""
    session = encoder.open(size, fps, cover=cover)
    try:
        session.add(frames)
        return session.finish()
    finally:
        session.abort()  # a no-op once finished


@attrs.frozen
class Decoded:
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    colorspace: int
    frames: np.ndarray


def decode(data: bytes) -> Decoded:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        context = stream.codec_context
        return Decoded(
            codec=context.name,
            pix_fmt=context.pix_fmt or "",
            width=context.width,
            height=context.height,
            fps=float(stream.average_rate or 0),
            colorspace=int(context.colorspace),
            frames=frames,
        )


def psnr(decoded: np.ndarray, reference: np.ndarray) -> float:
    assert decoded.shape == reference.shape
    mse = float(np.mean(np.square(decoded.astype(np.float64) - reference.astype(np.float64))))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def top_level_boxes(data: bytes) -> list[str]:
    """The MP4's top-level box types, in file order (ISO/IEC 14496-12 box headers)."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        elif size == 0:
            size = len(data) - offset
        assert size >= 8, f"corrupt box header at {offset}"
        boxes.append(kind.decode("ascii"))
        offset += size
    assert offset == len(data)
    return boxes


@pytest.fixture(scope="module")
def encoder() -> PyAVEncoder:
    return PyAVEncoder()


# --- the delivered file ----------------------------------------------------------------------


@pytest.mark.parametrize("fps", [12, 24, 60])
def test_an_h264_yuv420p_mp4_at_the_requested_size_and_fps(encoder: PyAVEncoder, fps: int) -> None:
    size = Size(256, 320)
    source = smooth_scene(9, size)

    video = encode(encoder, source, size, fps)

    decoded = decode(video.data)
    assert (decoded.codec, decoded.pix_fmt) == ("h264", "yuv420p")
    assert (decoded.width, decoded.height) == (256, 320)
    assert decoded.frames.shape == source.shape
    assert decoded.fps == fps
    assert video.size == size
    assert video.content_type == "video/mp4"
    assert video.size_bytes == len(video.data) > 0


def test_the_moov_atom_comes_before_the_media_data(encoder: PyAVEncoder) -> None:
    video = encode(encoder, smooth_scene(9, Size(256, 256)), Size(256, 256), 24)

    boxes = top_level_boxes(video.data)
    assert boxes[0] == "ftyp"
    assert boxes.index("moov") < boxes.index("mdat")


def test_the_picture_is_close_to_the_source_and_tagged_bt709(encoder: PyAVEncoder) -> None:
    size = Size(320, 256)
    source = smooth_scene(13, size)

    decoded = decode(encode(encoder, source, size, 24).data)

    assert psnr(decoded.frames, source) > MIN_PSNR_DB
    assert decoded.colorspace == 1  # AVCOL_SPC_BT709: players need not guess the matrix


def test_a_single_frame_is_a_one_frame_video(encoder: PyAVEncoder) -> None:
    source = smooth_scene(1, Size(256, 256))

    decoded = decode(encode(encoder, source, Size(256, 256), 24).data)

    assert decoded.frames.shape == (1, 256, 256, 3)
    assert psnr(decoded.frames, source) > MIN_PSNR_DB


def moving_texture(num_frames: int, size: Size) -> np.ndarray:
    """Blocky noise panning right and down over a gradient: real work for rate control."""
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (size.height // 8 + num_frames, size.width // 8 + 2 * num_frames, 3))
    texture = np.repeat(np.repeat(base.astype(np.int16), 8, axis=0), 8, axis=1)
    ramp = np.linspace(0, 60, size.height)[:, None, None]
    return np.stack(
        [
            np.clip(texture[t : t + size.height, 2 * t : 2 * t + size.width] // 2 + ramp + 40, 0, 255)
            for t in range(num_frames)
        ]
    ).astype(np.uint8)


@pytest.mark.slow
def test_the_same_frames_give_the_same_mp4_bytes_even_encoded_side_by_side(encoder: PyAVEncoder) -> None:
    """With libx264's macroblock-tree rate control five runs of one seeded job gave five
    different files; three encodes at a time (CPU contention) showed it on every try here."""
    size = Size(720, 1280)
    frames = moving_texture(33, size)

    with ThreadPoolExecutor(3) as pool:
        files = set(pool.map(lambda _: encode(encoder, frames, size, 24).data, range(6)))

    assert len(files) == 1


def test_frames_that_are_views_into_a_larger_array_are_read_correctly(encoder: PyAVEncoder) -> None:
    size = Size(256, 256)
    wide = smooth_scene(5, Size(512, 256))
    view = wide[:, :, ::2]  # every other column: not contiguous

    decoded = decode(encode(encoder, view, size, 24).data)

    assert psnr(decoded.frames, np.ascontiguousarray(view)) > MIN_PSNR_DB


# --- sizes: resizing and odd sides -----------------------------------------------------------


@pytest.mark.parametrize(
    ("generated", "requested"),
    [
        (Size(704, 1248), Size(720, 1280)),  # the default job: the model's size, scaled up
        (Size(640, 480), Size(320, 256)),  # down, and not keeping the aspect ratio
    ],
    ids=["up-704x1248-to-720x1280", "down-640x480-to-320x256"],
)
def test_frames_are_resized_to_the_requested_size(
    encoder: PyAVEncoder, generated: Size, requested: Size
) -> None:
    decoded = decode(encode(encoder, smooth_scene(3, generated), requested, 24).data)

    assert (decoded.width, decoded.height) == (requested.width, requested.height)
    # The same scene rendered directly at the requested size is what the resize should give.
    assert psnr(decoded.frames, smooth_scene(3, requested)) > MIN_PSNR_DB


@pytest.mark.parametrize(
    ("requested", "delivered"),
    [
        (Size(257, 319), Size(256, 318)),
        (Size(257, 320), Size(256, 320)),
        (Size(1280, 1279), Size(1280, 1278)),
        (Size(720, 1280), Size(720, 1280)),
    ],
)
def test_an_odd_side_is_delivered_one_pixel_smaller(requested: Size, delivered: Size) -> None:
    assert deliverable_size(requested) == delivered


def test_an_odd_request_is_encoded_whole_at_the_deliverable_size(encoder: PyAVEncoder) -> None:
    source = smooth_scene(5, Size(257, 319))

    video = encode(encoder, source, Size(257, 319), 24)

    decoded = decode(video.data)
    assert (decoded.codec, decoded.pix_fmt) == ("h264", "yuv420p")
    assert video.size == Size(decoded.width, decoded.height) == Size(256, 318)
    # Scaled, not cropped: the picture matches the whole scene rendered at 256x318.
    assert psnr(decoded.frames, smooth_scene(5, Size(256, 318))) > MIN_PSNR_DB


# --- cover: a trained size delivered at the requested one, undistorted -------------------------


def centre_window(generated: Size, requested: Size) -> tuple[float, float, float, float]:
    """The normalised part of a ``generated`` picture that covers ``requested`` when scaled."""
    scale = max(requested.width / generated.width, requested.height / generated.height)
    keep_x = requested.width / scale / generated.width
    keep_y = requested.height / scale / generated.height
    return ((1 - keep_x) / 2, (1 - keep_y) / 2, (1 + keep_x) / 2, (1 + keep_y) / 2)


@pytest.mark.parametrize(
    ("generated", "requested"),
    [
        (Size(704, 1280), Size(720, 1280)),  # the default job at the trained portrait size
        (Size(1280, 704), Size(1280, 720)),
        (Size(704, 1280), Size(736, 1248)),
        (Size(128, 256), Size(192, 256)),  # a wide crop, where a stretch would show at once
    ],
    ids=["704x1280-to-720x1280", "1280x704-to-1280x720", "704x1280-to-736x1248", "128x256-to-192x256"],
)
def test_cover_scales_and_centre_crops_to_the_exact_size(
    encoder: PyAVEncoder, generated: Size, requested: Size
) -> None:
    video = encode(encoder, smooth_scene(2, generated), requested, 24, cover=True)

    decoded = decode(video.data)
    assert video.size == Size(decoded.width, decoded.height) == requested
    # The centre of the scene at the generated proportions, not the whole scene squeezed.
    cropped = smooth_scene(2, requested, centre_window(generated, requested))
    assert psnr(decoded.frames, cropped) > MIN_PSNR_DB


def test_without_cover_the_frames_are_stretched_instead(encoder: PyAVEncoder) -> None:
    generated, requested = Size(128, 256), Size(192, 256)
    decoded = decode(encode(encoder, smooth_scene(2, generated), requested, 24).data)

    assert psnr(decoded.frames, smooth_scene(2, requested)) > MIN_PSNR_DB
    cropped = smooth_scene(2, requested, centre_window(generated, requested))
    assert psnr(decoded.frames, cropped) < MIN_PSNR_DB - 10


@pytest.mark.parametrize(
    ("source", "target", "window"),
    [
        (Size(704, 1280), Size(720, 1280), (0, 14, 704, 1252)),
        (Size(1280, 704), Size(1280, 720), (14, 0, 1252, 704)),
        (Size(704, 1280), Size(704, 1280), (0, 0, 704, 1280)),
        (Size(704, 1280), Size(360, 640), (0, 14, 704, 1252)),
    ],
)
def test_the_cover_window_is_centred_and_keeps_the_target_aspect(
    source: Size, target: Size, window: tuple[int, int, int, int]
) -> None:
    assert cover_window(source, target) == window


def test_cover_with_an_odd_request_delivers_one_pixel_less(encoder: PyAVEncoder) -> None:
    video = encode(encoder, smooth_scene(2, Size(64, 128)), Size(97, 129), 24, cover=True)

    assert video.size == Size(96, 128)
    assert (decode(video.data).width, decode(video.data).height) == (96, 128)


# --- failures: clear errors, no broken file --------------------------------------------------

BAD_FRAMES: dict[str, tuple[np.ndarray, str]] = {
    "float frames": (np.zeros((2, 64, 64, 3), dtype=np.float32), "must be uint8"),
    "no frame axis": (np.zeros((64, 64, 3), dtype=np.uint8), "must be shaped (num_frames, height, width, 3)"),
    "RGBA": (np.zeros((2, 64, 64, 4), dtype=np.uint8), "must be shaped (num_frames, height, width, 3)"),
    "empty array": (np.zeros((0, 64, 64, 3), dtype=np.uint8), "at least one frame"),
    "one pixel": (np.zeros((2, 1, 1, 3), dtype=np.uint8), "at least 2x2 pixels, got 1x1"),
}


@pytest.mark.parametrize(("frames", "message"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_bad_frames_are_a_clear_error(encoder: PyAVEncoder, frames: np.ndarray, message: str) -> None:
    with pytest.raises(JobFailure) as raised:
        encode(encoder, frames, Size(64, 64), 24)

    assert raised.value.code is ErrorCode.INTERNAL_ERROR
    assert raised.value.retryable is False  # the same frames would fail the same way again
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("size", "fps", "message"),
    [
        (Size(1, 64), 24, "size must be at least 2x2, got 1x64"),
        (Size(64, 64), 0, "fps must be a positive integer"),
    ],
)
def test_bad_size_or_fps_is_a_clear_error(encoder: PyAVEncoder, size: Size, fps: int, message: str) -> None:
    with pytest.raises(JobFailure, match=message) as raised:
        encode(encoder, smooth_scene(2, Size(64, 64)), size, fps)

    assert raised.value.code is ErrorCode.INTERNAL_ERROR


def test_a_failing_temporary_file_is_a_retryable_internal_error(tmp_path: Path) -> None:
    encoder = PyAVEncoder(temp_dir=tmp_path / "missing")

    with pytest.raises(JobFailure) as raised:
        encode(encoder, smooth_scene(2, Size(64, 64)), Size(64, 64), 24)

    assert raised.value.code is ErrorCode.INTERNAL_ERROR
    assert raised.value.retryable is True
    assert "encoding the MP4 failed" in raised.value.message


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    encoder: VideoEncoder = PyAVEncoder(temp_dir=tmp_path)

    video = encode(encoder, smooth_scene(3, Size(64, 64)), Size(64, 64), 24)

    assert decode(video.data).frames.shape == (3, 64, 64, 3)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "settings", [{"crf": 52}, {"crf": -1}, {"preset": "warp"}, {"threads": -1}, {"resize_filter": "nearest"}]
)
def test_bad_settings_are_refused_at_construction(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings))):
        PyAVEncoder(**settings)  # type: ignore[arg-type]
