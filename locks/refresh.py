"""Re-resolve the two locks from locks/requirements.in (``make lock``; ``make lock UPGRADE=1``).

``cpu.txt``: what ``make install`` installs (local machines, CI): Python 3.11 and the CPU build
of torch. The CPU wheel's own dependencies are locked (no CUDA libraries), and torch is written
without its ``+cpu`` label, so pip takes whichever 2.x.y build the machine offers: the CPU wheel
where one lies in pip's find-links (these machines), never a CUDA build resolved here.

``cu128.txt``: what the image installs (docker/Dockerfile.fastwan), Python 3.12, the same
versions as ``cpu.txt`` wherever both have a package. The image installs torch first from
PyTorch's cu128 index; that wheel pins its CUDA libraries (``nvidia-*-cu12``, ``triton``)
exactly itself, so they are left out here: PyPI, where this resolves, only offers the CUDA 13
build, whose libraries would be the wrong ones.

Nothing here touches the project's virtualenv; uv comes from its own (the Makefile makes it).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"
SOURCE = "locks/requirements.in"
OURS = (
    "fastwan-core",
    "fastwan-adapters",
    "fastwan-queue-worker",
    "fastwan-buffer-worker",
    "fastwan-generate",
)
PLATFORM = "x86_64-manylinux_2_28"
# The CUDA runtime that PyPI's torch brings and PyTorch's cu128 wheel pins for itself.
CUDA_RUNTIME = re.compile(r"^(nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+|triton)==", re.MULTILINE)


def compile_lock(uv: str, out: Path, python: str, *extra: str, upgrade: bool) -> None:
    command = [
        uv, "pip", "compile", SOURCE, "--quiet", "--no-config",
        "--python-version", python, "--python-platform", PLATFORM,
        "--custom-compile-command", "make lock",
        "-o", str(out.relative_to(ROOT)),
        *(arg for name in OURS for arg in ("--no-emit-package", name)),
        *extra,
    ]  # fmt: skip
    if upgrade:
        command.append("--upgrade")
    subprocess.run(command, cwd=ROOT, check=True)  # noqa: S603 - our own arguments


CPU_NOTE = """\
# make install's lock (Python 3.11, CPU torch): every third-party version, from
# locks/requirements.in. torch is plain {torch}: pip takes the CPU wheel from its find-links.
"""
CUDA_NOTE = """\
# The image's lock (Python 3.12, torch {torch}+cu128 from PyTorch's index, installed first):
# the same versions as locks/cpu.txt. torch's CUDA libraries (nvidia-*-cu12, triton) are pinned
# exactly by that wheel itself; the names excluded at the end are PyPI's CUDA 13 build's.
"""


def _with_note(path: Path, note: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    body = [line for line in lines if not (line.startswith("# ") and line in note)]
    path.write_text(note + "".join(body))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uv", required=True, help="the uv executable")
    parser.add_argument("--torch", required=True, help="torch's version, the Makefile's TORCH_VERSION")
    parser.add_argument("--cpu-torch-find-links", required=True, help="where the CPU wheel of torch lies")
    parser.add_argument("--upgrade", action="store_true", help="newest versions, not the current pins")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        override = Path(scratch) / "torch.txt"
        override.write_text(f"torch=={args.torch}+cpu\n")
        cpu = LOCKS / "cpu.txt"
        compile_lock(
            args.uv, cpu, "3.11", "--find-links", args.cpu_torch_find_links, "--override", str(override),
            upgrade=args.upgrade,
        )  # fmt: skip
        cpu.write_text(re.sub(r"^torch==(\S+)\+cpu$", r"torch==\1", cpu.read_text(), flags=re.MULTILINE))
        _with_note(cpu, CPU_NOTE.format(torch=args.torch))

        override.write_text(f"torch=={args.torch}\n")
        cuda = LOCKS / "cu128.txt"
        same = ("--constraint", str(cpu.relative_to(ROOT)), "--override", str(override))
        compile_lock(args.uv, cuda, "3.12", *same, upgrade=False)
        runtime = sorted(set(CUDA_RUNTIME.findall(cuda.read_text())))
        left_out = (arg for name in runtime for arg in ("--no-emit-package", name))
        compile_lock(args.uv, cuda, "3.12", *same, *left_out, upgrade=False)
        _with_note(cuda, CUDA_NOTE.format(torch=args.torch))
    print(f"locked locks/cpu.txt and locks/cu128.txt; left to torch's cu128 wheel: {', '.join(runtime)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
