"""GPU bench: the generator at full size, stage by stage, for each memory profile.

The models are Wan 2.2 TI2V-5B's full architecture (transformer 30 layers, 24 heads of 128,
FFN 14336, text width 4096; Wan 2.2 VAE, z_dim 48; UMT5-XXL text encoder) with random
weights, built on the GPU in seconds from ``fastwan_adapters.generator.architecture``:
nothing is downloaded, and the time per stage depends on the shapes, not on the values.
Each profile gets freshly built modules placed by ``DiffusersGenerator.from_components``
(the production code path from placement on), one warm-up, then the jobs: 1280x704 and
720x1280 (generated at the trained 704x1280, cover-cropped by the encoder), 121 frames, the
distilled 3 steps, image-to-video by default (the production case; ``--mode t2v`` for text-to-video).

``--attention`` chooses the self-attention rows: ``vsa`` (the default model's Video Sparse
Attention at ``--vsa-sparsity``, random compression gates attached as the real checkpoint's
are; the flex_attention fast path on CUDA, compiled in the warm-up), ``dense``, or both
(``dense,vsa``) for the comparison.

Columns: text encoding, each denoising step, VAE decode, MP4 encode (``PyAVEncoder``, when
it is installed), total, peak GPU memory; medians over ``--runs``. The GPU is synchronised
at each stage boundary so that each stage is charged its own work. The MP4 encode of
random-weight output is pessimistic: noise-like frames cost x264 more than real video.

Then the decode -> encode rows (``bench/decode_encode.py``, ``--no-decode-rows`` to skip):
the full bf16 decode of 121 x 1280 x 704 alone, with each speed setting added in turn
(channels_last_3d, cuDNN benchmark, torch.compile), the tiny TAEHV decoder, and each
decoded clip encoded after the decode (sequential) and streamed during it, with the encoding
left after the last chunk; libx264 against h264_nvenc where NVENC opens. Targets: the full
decode under 3.5 s on an H100/H200, the encode tail under 0.3 s.

A time budget (``--budget-s``, default 400 s) keeps the whole run inside 8 minutes on one
H100: a measurement that would not fit is skipped and reported as such.

    python bench/gpu_generate.py                          # full size; needs a CUDA GPU
    python bench/gpu_generate.py --profiles resident --runs 3 --json results.json
    python bench/gpu_generate.py --profiles resident --attention dense,vsa
    python bench/gpu_generate.py --tiny                   # CPU dry run with the tiny model
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from PIL import Image

from fastwan_adapters.generator import PROFILES, DiffusersGenerator, GeneratorSettings
from fastwan_adapters.generator.loading import WanComponents, load_components
from fastwan_adapters.generator.random_model import FULL_SIZE, random_model
from fastwan_adapters.generator.tiny import ensure_tiny_model
from fastwan_adapters.testing import FrameCollector, gradient_frame
from fastwan_core.job import Job
from fastwan_core.plan import GenerationPlan, plan_generation
from fastwan_core.ports import Stage

try:
    from fastwan_adapters.encoder import PyAVEncoder
except ImportError:  # the encoder is optional here: without it the MP4 column is left out
    PyAVEncoder = None  # type: ignore[assignment,misc]

#: Measured from here: imports (about 10 s with CUDA) come before, so the default budget
#: leaves them and the last measurement's overrun room inside 8 minutes.
_START = time.perf_counter()

FULL_JOBS = ((1280, 704), (720, 1280))
TINY_JOBS = ((320, 256), (256, 320))
COLUMNS = (
    "text_encode_s",
    "step_1_s",
    "step_2_s",
    "step_3_s",
    "decode_s",
    "mp4_s",
    "total_s",
    "peak_vram_gib",
)


@attrs.frozen
class Measurement:
    attention: str
    profile: str
    job: str
    generated: str
    values: dict[str, float]


class StageClock:
    """The generation events, timed: the GPU is synchronised at every boundary."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.marks: list[tuple[str, float]] = []

    def stage(self, stage: Stage) -> None:
        self.sync()
        self.marks.append((stage.value, time.perf_counter()))

    def step(self, index: int, total: int) -> None:
        self.sync()
        self.marks.append((f"step_{index}", time.perf_counter()))

    def check_cancelled(self) -> None:
        return None

    def durations(self, end: float) -> dict[str, float]:
        times = dict(self.marks)
        steps = sorted(name for name in times if name.startswith("step_"))
        result = {"text_encode_s": times[Stage.DENOISE.value] - times[Stage.TEXT_ENCODE.value]}
        previous = times[Stage.DENOISE.value]
        for name in steps:
            result[f"{name}_s"] = times[name] - previous
            previous = times[name]
        result["decode_s"] = end - times[Stage.DECODE.value]
        return result


# -- building the modules ---------------------------------------------------------------------


def build_full_size(device: torch.device, *, gates: bool) -> WanComponents:
    """Random-weight full-size modules, made directly on ``device`` (bf16, VAE fp32).

    With ``gates``, random VSA compression gates are attached as the sparse checkpoint's are.
    """
    model = random_model(FULL_SIZE, seed=0, sparse=gates, device=device)
    return WanComponents(model.tokenizer, model.text_encoder, model.transformer, model.vae)


def build_tiny(folder: Path, *, gates: bool) -> WanComponents:
    folder = folder.with_name(f"{folder.name}-sparse") if gates else folder
    return load_components(ensure_tiny_model(folder, sparse=gates), torch.float32, model="tiny")


# -- running ----------------------------------------------------------------------------------


def measure(
    generator: DiffusersGenerator, plan: GenerationPlan, image: Image.Image | None, sync: Callable[[], None]
) -> dict[str, float]:
    clock = StageClock(sync)
    frames = FrameCollector()
    started = time.perf_counter()
    video = generator.generate(plan, image, clock, frames)
    sync()
    values = clock.durations(time.perf_counter())
    if PyAVEncoder is not None:
        encode_started = time.perf_counter()
        session = PyAVEncoder().open(plan.output_size, plan.fps, cover=plan.cover)
        session.add(frames.frames)
        session.finish()
        values["mp4_s"] = time.perf_counter() - encode_started
    values["total_s"] = time.perf_counter() - started
    values["peak_vram_gib"] = video.peak_vram_gb
    return values


def run(args: argparse.Namespace, scratch: Path) -> tuple[list[Measurement], list[str], dict[str, Any]]:
    started = _START
    device = torch.device("cpu") if args.tiny else torch.device("cuda")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    jobs = TINY_JOBS if args.tiny else FULL_JOBS
    frames = args.frames or (9 if args.tiny else 121)
    tiny_folder = scratch / "tiny"
    measurements: list[Measurement] = []
    notes: list[str] = []
    setup: dict[str, Any] = {}
    last_duration = last_setup = 0.0

    for attention, profile in [(a, p) for a in args.attention for p in args.profiles]:
        remaining = args.budget_s - (time.perf_counter() - started)
        if remaining < last_setup + 2 * last_duration:
            notes.append(f"{attention} {profile}: skipped, {remaining:.0f} s of the budget left")
            continue
        build_started = time.perf_counter()
        gates = attention == "vsa"
        components = (
            build_tiny(tiny_folder, gates=gates) if args.tiny else build_full_size(device, gates=gates)
        )
        settings = GeneratorSettings(
            attention=attention,
            vsa_sparsity=args.vsa_sparsity,
            model="tiny" if args.tiny else "random-weights Wan 2.2 TI2V-5B (full size)",
            memory_profile=profile,
            torch_compile=args.compile,
            attention_backend=args.attention_backend,
            warmup=False,
            vae_decode_dtype=args.vae_decode,
        )
        generator = DiffusersGenerator.from_components(components, settings, device)
        placed = time.perf_counter() - build_started
        warmup = generator.warm_up()
        last_setup = time.perf_counter() - build_started
        label = f"{attention} {profile}"
        setup[label] = {"build_and_place_s": round(placed, 2), "warmup_s": round(warmup, 2)}
        print(f"[{label}] built and placed in {placed:.1f} s, warm-up {warmup:.1f} s", file=sys.stderr)
        try:
            for width, height in jobs:
                job = Job(
                    musetalk_job_id="bench", prompt=args.prompt, width=width, height=height, num_frames=frames
                )
                plan = plan_generation(job)
                image = gradient_frame(plan.generated_size.width, plan.generated_size.height)
                runs: list[dict[str, float]] = []
                for index in range(args.runs):
                    remaining = args.budget_s - (time.perf_counter() - started)
                    if runs and remaining < 1.5 * last_duration:
                        notes.append(
                            f"{label} {job.requested_size}: {len(runs)} of {args.runs} runs (budget)"
                        )
                        break
                    values = measure(generator, plan, image if args.mode == "i2v" else None, sync)
                    last_duration = values["total_s"]
                    runs.append(values)
                    print(
                        f"[{label}] {job.requested_size} run {index + 1}: {values['total_s']:.2f} s",
                        file=sys.stderr,
                    )
                median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
                measurements.append(
                    Measurement(attention, profile, str(job.requested_size), str(plan.generated_size), median)
                )
        finally:
            generator.close()
            del generator, components
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    setup["wall_s"] = round(time.perf_counter() - started, 1)
    return measurements, notes, setup


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import diffusers
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "mode": args.mode,
        "frames": args.frames or (9 if args.tiny else 121),
        "runs": args.runs,
        "attention_backend": args.attention_backend or "native",
        "torch_compile": args.compile,
        "vae_decode": args.vae_decode,
        "vsa_sparsity": args.vsa_sparsity,
    }
    if torch.cuda.is_available() and not args.tiny:
        properties = torch.cuda.get_device_properties(0)
        info["gpu"] = properties.name
        info["gpu_memory_gib"] = round(properties.total_memory / 1024**3, 1)
    else:
        info["gpu"] = "none (CPU, tiny model)"
    return info


def table(measurements: list[Measurement]) -> str:
    columns = [column for column in COLUMNS if any(column in m.values for m in measurements)]
    header = "| attention | profile | job | generated | " + " | ".join(columns) + " |"
    rule = "|" + "---|" * (4 + len(columns))
    rows = [
        f"| {m.attention} | {m.profile} | {m.job} | {m.generated} | "
        + " | ".join(f"{m.values[column]:.2f}" if column in m.values else "-" for column in columns)
        + " |"
        for m in measurements
    ]
    return "\n".join([header, rule, *rows])


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", "--dry-run", action="store_true", help="CPU run with the tiny model")
    parser.add_argument("--profiles", type=lambda text: text.split(","), default=list(PROFILES))
    parser.add_argument("--runs", type=int, default=2, help="runs per job and profile (median reported)")
    parser.add_argument("--frames", type=int, default=None, help="frames per job (121; 9 with --tiny)")
    parser.add_argument("--mode", choices=("i2v", "t2v"), default="i2v")
    parser.add_argument(
        "--attention",
        type=lambda text: text.split(","),
        default=["vsa"],
        help="self-attention rows: vsa, dense, or dense,vsa",
    )
    parser.add_argument("--vsa-sparsity", type=float, default=0.8)
    parser.add_argument("--attention-backend", default=None, help="one of diffusers' attention backends")
    parser.add_argument("--compile", action="store_true", help="regional torch.compile of the blocks")
    parser.add_argument("--vae-decode", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--prompt", default="a woman speaks to the camera with calm, composed energy")
    parser.add_argument("--budget-s", type=float, default=400.0, help="stop measuring after this long")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--no-decode-rows", action="store_true", help="skip the decode -> encode rows")
    args = parser.parse_args(argv)
    unknown = [profile for profile in args.profiles if profile not in PROFILES]
    if unknown:
        parser.error(f"--profiles must be among {', '.join(PROFILES)}, got {', '.join(unknown)}")
    if unknown_attention := [name for name in args.attention if name not in ("vsa", "dense")]:
        parser.error(f"--attention must be among vsa, dense, got {', '.join(unknown_attention)}")
    if not args.tiny and not torch.cuda.is_available():
        parser.error("the full-size bench needs a CUDA GPU; use --tiny for a CPU dry run")
    return args


def decode_rows(args: argparse.Namespace) -> dict[str, Any]:
    """``bench/decode_encode.py``'s rows: full size on the GPU, a small shape with ``--tiny``."""
    sys.path.insert(0, str(Path(__file__).parent))
    import decode_encode

    tiny = ["--frames", "9", "--width", "256", "--height", "256", "--runs", "1", "--all-rows"]
    options = decode_encode.parse(
        tiny if args.tiny else ["--gpu", "--frames", "121", "--runs", str(args.runs)]
    )
    report: dict[str, Any] = decode_encode.run(options)
    print(decode_encode.table(report))
    if "nvenc" in report:
        print(f"note: h264_nvenc {report['nvenc']}")
    for note in report.get("notes", []):
        print(f"note: {note}")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="fastwan-bench-") as scratch:
        measurements, notes, setup = run(args, Path(scratch))
    info = environment(args)
    print(json.dumps(info))
    print(table(measurements))
    for note in notes:
        print(f"note: {note}")
    print(f"setup: {json.dumps(setup)}")
    decode = None if args.no_decode_rows else decode_rows(args)
    if args.json is not None:
        payload = {
            "environment": info,
            "setup": setup,
            "notes": notes,
            "results": [attrs.asdict(m) for m in measurements],
            "decode_encode": decode,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
