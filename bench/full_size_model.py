"""Write a random-weight FastWan 2.2 checkpoint folder: full size on a GPU, the tiny one on a CPU.

The worker loads it like the real ``FastVideo/FastWan2.2-TI2V-5B-Diffusers`` (``FASTWAN_MODEL=DIR``):
the same diffusers layout (``model_index.json`` naming ``WanDMDPipeline``; ``transformer``,
``text_encoder``, ``tokenizer``, ``vae``, ``scheduler``), VSA compression gates at block level in
the transformer's safetensors as FastWan stores them, shards with an index. So a GPU machine
that reaches no model hub can run the worker end to end: only the weights are random, and a
run's time and memory depend on the shapes, not the values.

One builder, two sizes (``generator.random_model``; ``generator.model_folder`` keeps the
folder): the tiny model is its small size. The full size's numbers, and where they come from:

- transformer (``architecture.WAN22_TI2V_5B_TRANSFORMER``): 30 layers, 24 heads of 128 (3072
  wide), FFN 14336, 48 latent channels in and out, text width 4096, patch 1x2x2, RMS q/k norm
  across heads: diffusers' ``scripts/convert_wan_to_diffusers.py``, model type
  ``Wan2.2-TI2V-5B``; Wan-Video's own ``wan/configs/wan_ti2v_5B.py`` says the same (dim 3072,
  ffn_dim 14336, 24 heads, 30 layers, 48 in).
- VAE (``architecture.WAN22_VAE``): base 160, decoder base 256, z 48, patch 2, 16x spatial and
  4x temporal compression, the 48 latent means and deviations: that script's
  ``vae22_diffusers_config``.
- text encoder (``architecture.UMT5_XXL_ENCODER``): google/umt5-xxl's encoder (vocabulary
  256,384, 4096 wide, 24 layers of 64 heads, FFN 10240, gated GELU), which that script saves
  in bf16; a tokenizer over characters whose vocabulary is padded to the same 256,384 ids.
- dtypes: transformer and text encoder bf16, VAE fp32: what the worker loads them as on a GPU
  (``loading.load_components``) whatever the files hold. The hub repository's own files could
  not be read from here; the 24.8 GB these make by parameter count (10.6 transformer with its
  gates, 11.4 text encoder, 2.8 VAE) is about the 24 GB the worker downloads (``generator.hub``).

Time: the modules are made directly on the GPU (random init in bf16 takes seconds) and saved
by ``save_pretrained``; the target is under a minute for the whole folder on an H100 machine.
A folder that already holds this build is reused (a second call on a warm machine).

    python bench/full_size_model.py --out /tmp/fastwan-full            # GPU: full size
    python bench/full_size_model.py --out /tmp/tiny-sparse --size tiny  # the tiny-sparse model
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator.model_folder import ensure_model, is_complete
from fastwan_adapters.generator.random_model import FULL_SIZE, TINY_SIZE

SIZES = {"full": FULL_SIZE, "tiny": TINY_SIZE}


def folder_bytes(folder: Path) -> dict[str, int]:
    """Bytes per component folder (and the files at the top, under ``.``)."""
    sizes: dict[str, int] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            part = path.relative_to(folder).parts
            key = part[0] if len(part) > 1 else "."
            sizes[key] = sizes.get(key, 0) + path.stat().st_size
    return dict(sorted(sizes.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (or reuse)")
    parser.add_argument(
        "--size", choices=sorted(SIZES), default=None, help="full on a GPU, tiny without (default)"
    )
    parser.add_argument("--dense", action="store_true", help="no VSA compression gates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    # Stopped at its time limit, the half-written folder (25 GB at full size) is removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cuda = torch.cuda.is_available()
    size = SIZES[args.size or ("full" if cuda else "tiny")]
    if size is FULL_SIZE and not cuda:
        parser.error("--size full is made on a CUDA GPU (about 25 GB of weights); use --size tiny here")
    device = torch.device("cuda" if cuda and size is FULL_SIZE else "cpu")

    started = time.perf_counter()
    reused = is_complete(args.out, size, not args.dense)
    try:
        folder = ensure_model(
            args.out, size, seed=args.seed, sparse=not args.dense, owner="--out", device=device
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    sizes = folder_bytes(folder)
    summary: dict[str, Any] = {
        "folder": str(folder),
        "size": size.name,
        "sparse": not args.dense,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "seconds": round(seconds, 2),
        "reused": reused,
        "gb_written": round(sum(sizes.values()) / 1e9, 3),
        "bytes": sizes,
    }
    if device.type == "cuda":
        summary["peak_vram_gib"] = round(torch.cuda.max_memory_allocated(device) / 1024**3, 2)
    print(json.dumps(summary))
    print(
        f"{size.name} model {'reused' if reused else 'written'} in {folder}: "
        f"{summary['gb_written']:.3f} GB in {seconds:.1f} s"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
