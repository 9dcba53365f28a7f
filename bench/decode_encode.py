"""Decode -> encode: one after the other (as before) against streamed (decode chunks into the encoder).

The VAE decodes latent frame by latent frame (``generator.decoding.decode_chunks``, the
production code); the sequential row collects every frame and then hands them to an encoding
session in one chunk, the streaming row hands each chunk to ``PyAVEncoder.open``'s session as it
is decoded, and the session encodes in its own thread while the next chunk decodes. Target:
streaming wall at most the decode alone + 15%, i.e. nearly all of the encoding hidden behind
the decode.

On the CPU (default) the VAE is the tiny model's (random weights, the Wan 2.2 layout at a
few channels) and torch gets one thread, so the encoder has the other core, as it has the
CPU to itself beside a GPU. ``--gpu`` runs the full-size Wan 2.2 VAE (random weights) on
CUDA and adds the rows the GPU bench lists: the bf16 decode with each speed setting added in
turn (channels_last_3d, cuDNN benchmark, torch.compile), the tiny TAEHV decoder, and
libx264 against h264_nvenc where NVENC opens. Latents are random: the time depends on
shapes, not values.

    python bench/decode_encode.py                         # CPU, tiny VAE
    python bench/decode_encode.py --frames 121 --width 1280 --height 704 --runs 5
    python bench/decode_encode.py --gpu --runs 3          # needs a CUDA GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from fastwan_adapters.encoder import PyAVEncoder, nvenc_problem
from fastwan_adapters.generator.architecture import WAN22_VAE
from fastwan_adapters.generator.decoding import configure_full_decoder, decode_chunks
from fastwan_adapters.generator.taehv import build_random_tiny_decoder
from fastwan_adapters.generator.tiny import ensure_tiny_model
from fastwan_core.values import Size


def tiny_vae(scratch: Path) -> AutoencoderKLWan:
    vae: AutoencoderKLWan = AutoencoderKLWan.from_pretrained(
        ensure_tiny_model(scratch / "tiny"), subfolder="vae"
    )
    return vae.eval().requires_grad_(False)


def full_vae(device: torch.device) -> AutoencoderKLWan:
    with torch.device(device):
        vae = AutoencoderKLWan(**WAN22_VAE)
    return vae.eval().requires_grad_(False)


def timed(action: Callable[[], Any], sync: Callable[[], None]) -> float:
    sync()
    started = time.perf_counter()
    action()
    sync()
    return time.perf_counter() - started


def rows_for(
    chunks: Callable[[], Any], size: Size, runs: int, sync: Callable[[], None], codec: str = "libx264"
) -> dict[str, float]:
    """Medians of: decode alone, decode then encode, decode streamed into the encoder (and its tail)."""
    encoder = PyAVEncoder(codec=codec)  # type: ignore[arg-type]
    results: dict[str, list[float]] = {"decode_s": [], "sequential_s": [], "streaming_s": [], "tail_s": []}
    for _ in range(runs):
        results["decode_s"].append(timed(lambda: list(chunks()), sync))

        def sequential() -> None:
            frames = np.concatenate(list(chunks()))
            session = encoder.open(size, 24)
            session.add(frames)
            session.finish()

        results["sequential_s"].append(timed(sequential, sync))

        def streaming(tails: list[float] = results["tail_s"]) -> None:
            session = encoder.open(size, 24)
            for chunk in chunks():
                session.add(chunk)
            last = time.perf_counter()
            session.finish()
            tails.append(time.perf_counter() - last)

        results["streaming_s"].append(timed(streaming, sync))
    return {key: statistics.median(values) for key, values in results.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda") if args.gpu else torch.device("cpu")
    sync = (lambda: torch.cuda.synchronize(device)) if args.gpu else (lambda: None)
    if not args.gpu:
        torch.set_num_threads(args.torch_threads)
    size = Size(args.width, args.height)
    latent_frames = (args.frames - 1) // 4 + 1
    generator = torch.Generator("cpu").manual_seed(0)
    latents = torch.randn((1, 48, latent_frames, args.height // 16, args.width // 16), generator=generator)
    latents = latents.to(device)
    report: dict[str, Any] = {
        "device": str(device),
        "frames": args.frames,
        "size": str(size),
        "runs": args.runs,
    }
    with tempfile.TemporaryDirectory(prefix="fastwan-bench-") as scratch:
        vae = full_vae(device) if args.gpu else tiny_vae(Path(scratch))
        bf16 = args.gpu

        def full() -> Any:
            return decode_chunks(vae, latents, bf16=bf16, check=lambda: None)

        list(full())  # warm-up: kernels, allocator
        rows = {
            "full decoder" + (" bf16" if bf16 else " (tiny model's VAE, fp32)"): rows_for(
                full, size, args.runs, sync
            )
        }
        if args.gpu or args.all_rows:
            for name, flags in (
                ("+ channels_last_3d", {"channels_last": True}),
                ("+ cuDNN benchmark", {"cudnn_benchmark": True}),
                ("+ torch.compile", {"compile_decoder": True}),
            ):
                try:
                    configure_full_decoder(
                        vae,
                        **{
                            "channels_last": False,
                            "cudnn_benchmark": False,
                            "compile_decoder": False,
                            **flags,
                        },
                    )  # type: ignore[arg-type]
                    list(full())  # warm-up (compiles)
                except Exception as error:  # e.g. no C++ compiler for torch.compile on a CPU box
                    report.setdefault("notes", []).append(
                        f"{name}: not measured ({type(error).__name__}: {error})"[:300]
                    )
                    continue
                rows[f"full decoder {name}"] = rows_for(full, size, args.runs, sync)
        if args.gpu or args.all_rows or args.tiny_decoder:
            add_tiny_row(rows, latents, size, args.runs, sync, bf16)
        problem = nvenc_problem()
        if problem is None:
            rows["full decoder, h264_nvenc"] = rows_for(full, size, args.runs, sync, codec="h264_nvenc")
        else:
            report["nvenc"] = f"not measured: {problem}"
    report["rows"] = rows
    return report


def add_tiny_row(
    rows: dict[str, Any], latents: torch.Tensor, size: Size, runs: int, sync: Callable[[], None], bf16: bool
) -> None:
    """The TAEHV decoder at full width (on the CPU slower than the tiny model's few-channel VAE)."""
    device = latents.device
    tiny = build_random_tiny_decoder(seed=0).to(device, dtype=torch.bfloat16 if bf16 else torch.float32)

    def tiny_chunks() -> Any:
        return tiny.decode_stream(latents)

    list(tiny_chunks())
    rows["tiny decoder (TAEHV)"] = rows_for(tiny_chunks, size, runs, sync)


def table(report: dict[str, Any]) -> str:
    lines = [
        "| decoder | decode alone s | sequential s | streaming s | streaming / decode | encode tail s |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["rows"].items():
        lines.append(
            f"| {name} | {row['decode_s']:.2f} | {row['sequential_s']:.2f} | {row['streaming_s']:.2f} | "
            f"{row['streaming_s'] / row['decode_s']:.2f} | {row['tail_s']:.2f} |"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpu", action="store_true", help="full-size VAE on CUDA, plus the GPU rows")
    parser.add_argument("--frames", type=int, default=61)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=640)
    parser.add_argument("--runs", type=int, default=5, help="median of this many runs")
    parser.add_argument("--tiny-decoder", action="store_true", help="CPU: add the TAEHV decoder's row")
    parser.add_argument("--all-rows", action="store_true", help="CPU: every GPU row too (checks the script)")
    parser.add_argument("--torch-threads", type=int, default=1, help="CPU only: torch's threads")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.gpu and not torch.cuda.is_available():
        parser.error("--gpu needs a CUDA GPU")
    if args.gpu and args.width == args.height == 640:
        args.width, args.height = 1280, 704  # the GPU targets' shape unless told otherwise
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    report = run(args)
    print(json.dumps({key: value for key, value in report.items() if key != "rows"}))
    print(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
