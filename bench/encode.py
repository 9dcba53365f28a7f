"""Encoder bench: ``PyAVEncoder`` against diffusers' ``export_to_video`` on the same frames.

Both encode the same 121 synthetic 720x1280 frames (a smooth moving scene with texture: a
panning textured backdrop, drifting soft shapes, one hard-edged disc, a slow colour shift) in
one process. After one warm-up each, the runs are interleaved in alternating order, so that
load from other processes hits both alike. The table gives the median wall time and the median
CPU time (all threads, ffmpeg's subprocess included: steadier than wall time on a shared
machine), the speed-ups, the PSNR of each decoded video against the source frames (RGB, all
frames) and the file size. The last row is the production path of the default job: the model's
704x1280 frames (the trained size), scaled to cover 720x1280 and centre-cropped. Those frames
are the source's picture at the trained size, with the rows the crop cuts off padded by edge
pixels, so its PSNR against the 720x1280 source includes the resize round trip.

The "MP4s" column counts the distinct files a row's runs gave (warm-up included): 1 when the
encoder gives the same bytes for the same frames every time. ``--variant`` adds rows of our
encoder with other settings, interleaved with the rest.

    python bench/encode.py                      # 5 runs, the encoder's defaults
    python bench/encode.py --preset faster --crf 20 --runs 3
    python bench/encode.py --variant crf=22,mbtree=1 --variant crf=24   # against the defaults
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import av
import numpy as np
from PIL import Image

from fastwan_adapters.encoder import X264_PRESETS, PyAVEncoder, cover_window
from fastwan_core.values import Size


def synthetic_scene(num_frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Frames shaped ``(num_frames, height, width, 3)`` uint8: realistic work for an encoder.

    Smooth where generated video is smooth, textured where it is not, and moving the way a
    camera pan and a few objects move, so motion search finds real motion; neither flat nor
    noise, either of which would flatter or punish one encoder unfairly.
    """
    rng = np.random.default_rng(seed)
    pan = num_frames * 3
    canvas_h, canvas_w = height + pan, width + pan

    def smooth_noise(scale: int, amplitude: float) -> np.ndarray:
        small = rng.standard_normal((canvas_h // scale + 2, canvas_w // scale + 2)).astype(np.float32)
        image = Image.fromarray(small, mode="F").resize(
            (canvas_w, canvas_h), Image.Resampling.BICUBIC, box=(0, 0, canvas_w / scale, canvas_h / scale)
        )
        return np.asarray(image) * amplitude

    texture = smooth_noise(32, 28.0) + smooth_noise(6, 10.0) + smooth_noise(2, 4.0)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    blobs = [
        (
            rng.uniform(0.2, 0.8),
            rng.uniform(0.2, 0.8),
            rng.uniform(0.08, 0.2),
            rng.uniform(0, 255, 3).astype(np.float32),
        )
        for _ in range(4)
    ]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        phase = t / max(1, num_frames - 1)
        offset_y, offset_x = int(t * 1.5), int(t * 3.0)
        patch = texture[offset_y : offset_y + height, offset_x : offset_x + width]
        image: np.ndarray = np.empty((height, width, 3), dtype=np.float32)
        image[..., 0] = 90 + 80 * y + 40 * math.sin(2 * math.pi * phase) + patch
        image[..., 1] = 70 + 90 * x * (1 - y) + patch * 0.8
        image[..., 2] = 140 - 60 * y + 30 * math.cos(2 * math.pi * phase) + patch * 0.6
        for index, (cy, cx, radius, colour) in enumerate(blobs):
            angle = 2 * math.pi * phase * (index + 1) / 2
            by, bx = cy + 0.15 * math.sin(angle), cx + 0.15 * math.cos(angle)
            weight = np.exp(-((y - by) ** 2 * (height / width) ** 2 + (x - bx) ** 2) / (2 * radius**2))
            image = image * (1 - weight[..., None] * 0.8) + colour * weight[..., None] * 0.8
        # One hard-edged disc (anti-aliased over ~1.5 px): the sharp edges generated video has too.
        distance = np.hypot((y - 0.3 - 0.4 * phase) * height, (x - 0.7 + 0.3 * phase) * width) - 0.12 * width
        edge = np.clip(0.5 - distance / 1.5, 0.0, 1.0)[..., None]
        image = image * (1 - edge) + np.array([235.0, 225.0, 60.0], dtype=np.float32) * edge
        np.clip(image, 0, 255, out=image)
        frames[t] = (image + 0.5).astype(np.uint8)
    return frames


def psnr_against(data: bytes, source: np.ndarray) -> float:
    """RGB PSNR of the decoded MP4 against ``source``, over all frames (one global MSE)."""
    squared, count = 0.0, 0
    with av.open(io.BytesIO(data), mode="r") as container:
        for index, frame in enumerate(container.decode(video=0)):
            decoded = frame.to_ndarray(format="rgb24").astype(np.float32)
            squared += float(np.square(decoded - source[index]).sum())
            count += decoded.size
    if count != source.size:
        raise RuntimeError(f"decoded {count} values, expected {source.size}")
    return 10 * math.log10(255.0**2 / (squared / count))


def export_to_video_bytes(frames: list[Image.Image], fps: int) -> bytes:
    from diffusers.utils.export_utils import export_to_video

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "video.mp4"
        export_to_video(frames, str(path), fps=fps)
        return path.read_bytes()


@attrs.frozen
class Sample:
    wall_s: float
    cpu_s: float  # this process and its children (export_to_video's ffmpeg), all threads
    data: bytes


def timed(run: Callable[[], bytes]) -> Sample:
    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    cpu_start, wall_start = cpu(), time.perf_counter()
    data = run()
    return Sample(time.perf_counter() - wall_start, cpu() - cpu_start, data)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--fps", type=int, default=24)
    defaults = PyAVEncoder()
    parser.add_argument("--preset", choices=X264_PRESETS, default=defaults.preset)
    parser.add_argument("--crf", type=int, default=defaults.crf)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--x264-params", default=defaults.x264_params)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="FIELD=VALUE[,FIELD=VALUE]",
        help="one more row of ours: the encoder's fields changed, e.g. crf=22,mbtree=1",
    )
    args = parser.parse_args()

    size, generated_size = Size(720, 1280), Size(704, 1280)
    ours_encoder = PyAVEncoder(
        preset=args.preset, crf=args.crf, threads=args.threads, x264_params=args.x264_params
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"PyAV {av.__version__}; {args.frames} frames {size} @ {args.fps} fps; median of {args.runs} runs"
    )
    print(f"ours: {ours_encoder}")

    frames = synthetic_scene(args.frames, size.width, size.height)
    pictures = [Image.fromarray(frame) for frame in frames]  # export_to_video's cheapest exact input
    x, y, width, height = cover_window(generated_size, size)
    pad = ((y, generated_size.height - y - height), (x, generated_size.width - x - width), (0, 0))
    generated = np.stack(
        [
            np.pad(np.asarray(picture.resize((width, height), Image.Resampling.LANCZOS)), pad, mode="edge")
            for picture in pictures
        ]
    )

    def ours(frames: np.ndarray, *, cover: bool = False, encoder: PyAVEncoder = ours_encoder) -> bytes:
        session = encoder.open(size, args.fps, cover=cover)
        session.add(frames)
        return session.finish().data

    jobs: dict[str, Callable[[], bytes]] = {
        "diffusers export_to_video": lambda: export_to_video_bytes(pictures, args.fps),
        "ours (PyAVEncoder)": lambda: ours(frames),
        f"ours, cover + crop {generated_size} -> {size}": lambda: ours(generated, cover=True),
    }
    for spec in args.variant:
        variant = attrs.evolve(ours_encoder, **_fields(spec))
        jobs[f"ours, {spec}"] = lambda variant=variant: ours(frames, encoder=variant)
    outputs: dict[str, set[bytes]] = {name: set() for name in jobs}
    for name, job in jobs.items():  # warm-up: first-call costs are not what a worker pays per job
        outputs[name].add(job())
    samples: dict[str, list[Sample]] = {name: [] for name in jobs}
    for run in range(args.runs):  # interleaved, alternating order, so load drifts hit all alike
        for name in list(jobs) if run % 2 == 0 else reversed(list(jobs)):
            samples[name].append(timed(jobs[name]))

    print(
        "\n| encoder | median wall s | frames/s | speed-up (wall) | median CPU s | speed-up (CPU) "
        "| PSNR dB | MB | MP4s |\n|---|---|---|---|---|---|---|---|---|"
    )
    base_wall = base_cpu = 0.0
    for name, runs in samples.items():
        wall = statistics.median(sample.wall_s for sample in runs)
        cpu = statistics.median(sample.cpu_s for sample in runs)
        base_wall, base_cpu = base_wall or wall, base_cpu or cpu
        data = runs[-1].data
        distinct = len(outputs[name] | {sample.data for sample in runs})
        print(
            f"| {name} | {wall:.2f} | {args.frames / wall:.1f} | {base_wall / wall:.2f}x | {cpu:.2f} "
            f"| {base_cpu / cpu:.2f}x | {psnr_against(data, frames):.2f} | {len(data) / 1e6:.2f} "
            f"| {distinct} of {len(runs) + 1} |"
        )
    print("\nwall s per run:", {name: [round(s.wall_s, 2) for s in runs] for name, runs in samples.items()})
    print(f"load after: {os.getloadavg()[0]:.2f}")


def _fields(spec: str) -> dict[str, object]:
    """``crf=21,x264-params=mbtree=1`` as PyAVEncoder's fields (``-`` read as ``_``)."""
    fields: dict[str, object] = {}
    for part in spec.split(","):
        key, _, value = part.partition("=")
        name = key.strip().replace("-", "_")
        if name in ("crf", "threads"):
            fields[name] = int(value)
        elif name == "mbtree":
            fields[name] = value.strip().lower() in ("1", "true", "on")
        else:
            fields[name] = value
    return fields


if __name__ == "__main__":
    main()
