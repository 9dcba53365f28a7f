"""One self-attention call: dense SDPA against Video Sparse Attention (fast path and reference).

On a GPU the production shape: 24 heads of 128 over the patch grid of 121 frames at
1280x704 (31 x 22 x 40 = 27,280 tokens, 480 cubes), bf16. On a CPU a reduced shape (the
same code; the timings only show the code runs). Each variant gets warm-up calls (the fast
path compiles on its first), then ``--runs`` timed calls; the table gives the median and
the fastest, the ratio to dense, and the fast path's largest difference from the reference.

    python bench/attention.py                     # GPU: production shape; CPU: reduced shape
    python bench/attention.py --grid 31,40,22     # 704x1280
    python bench/attention.py --sparsity 0.9 --runs 20
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from fastwan_adapters.generator.vsa.cubes import CubeLayout
from fastwan_adapters.generator.vsa.kernels import topk_count, video_sparse_attention

GPU_DEFAULTS = {"grid": (31, 22, 40), "heads": 24, "head_dim": 128}
CPU_DEFAULTS = {"grid": (9, 16, 24), "heads": 4, "head_dim": 64}


def timed(call: Callable[[], torch.Tensor], runs: int, sync: Callable[[], None]) -> list[float]:
    times = []
    for _ in range(runs):
        sync()
        started = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", type=lambda text: tuple(int(x) for x in text.split(",")), default=None)
    parser.add_argument("--heads", type=int, default=None)
    parser.add_argument("--head-dim", type=int, default=None)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) reference")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    defaults = GPU_DEFAULTS if cuda else CPU_DEFAULTS
    grid = args.grid or defaults["grid"]
    heads, head_dim = args.heads or defaults["heads"], args.head_dim or defaults["head_dim"]
    dtype = torch.bfloat16 if cuda else torch.float32
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    layout = CubeLayout.for_grid(grid, device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    shape = (1, layout.num_tokens, heads, head_dim)
    q, k, v, g = (torch.randn(shape, generator=generator).to(device, dtype) for _ in range(4))

    def dense() -> torch.Tensor:
        heads_first = (x.transpose(1, 2) for x in (q, k, v))
        return torch.nn.functional.scaled_dot_product_attention(*heads_first).transpose(1, 2)

    def vsa(implementation: str) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            return video_sparse_attention(
                q,
                k,
                v,
                g,
                layout=layout,
                sparsity=args.sparsity,
                implementation=implementation,  # type: ignore[arg-type]
            )

        return call

    variants: dict[str, Callable[[], torch.Tensor]] = {"dense SDPA": dense, "VSA fast (flex)": vsa("flex")}
    if not args.no_reference:
        variants["VSA reference"] = vsa("reference")
    results: dict[str, dict[str, float]] = {}
    outputs: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, call in variants.items():
            started = time.perf_counter()
            for _ in range(max(args.warmup, 1)):
                outputs[name] = call()
            sync()
            first = time.perf_counter() - started
            times = timed(call, args.runs if name != "VSA reference" else max(1, args.runs // 5), sync)
            results[name] = {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times)}
            results[name]["warmup_s"] = first
            print(f"{name}: median {results[name]['median_ms']:.2f} ms", file=sys.stderr)
    difference = None
    if "VSA reference" in outputs:
        difference = float(
            (outputs["VSA fast (flex)"].float() - outputs["VSA reference"].float()).abs().max()
        )

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)",
        "dtype": str(dtype).removeprefix("torch."),
        "grid": grid,
        "tokens": layout.num_tokens,
        "cubes": layout.num_cubes,
        "topk": topk_count(layout.num_cubes, args.sparsity),
        "heads": heads,
        "head_dim": head_dim,
        "sparsity": args.sparsity,
        "runs": args.runs,
        "fast_vs_reference_max_abs": difference,
    }
    print(json.dumps(info))
    dense_ms = results["dense SDPA"]["median_ms"]
    print("| variant | median ms | min ms | / dense | first calls s |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        print(
            f"| {name} | {values['median_ms']:.2f} | {values['min_ms']:.2f} | "
            f"{values['median_ms'] / dense_ms:.2f} | {values['warmup_s']:.1f} |"
        )
    flops = 4 * layout.num_tokens**2 * heads * head_dim
    print(f"dense attention FLOP: {flops:.3g} ({math.prod(grid)} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
