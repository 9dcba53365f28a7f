"""Does this Python have what the worker and the benches need? One line says what is missing.

The GPU machine's Python has torch, transformers and huggingface_hub of its own (other
versions than our lock's) and none of our other packages: their wheels travel in ``.whl/``
and ``gpu_session.sh`` installs them before this runs. Our own distributions travel as source
on ``PYTHONPATH``, without metadata, so their requirements are read from their
``pyproject.toml`` here; every other requirement is followed through the installed packages'
metadata, markers evaluated, extras left out. Then the modules the session runs are imported,
so that an installed version our code cannot work with shows up here, not minutes later.

    python bench/preflight.py                  # the check: exit 1 when anything is missing
    python bench/preflight.py --device-wheels  # here: the lock's pins of what the GPU lacks
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tomllib
from collections import deque
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
#: Our distributions the session runs, by name, and where their sources are.
SOURCES = {
    "fastwan-core": "packages/fastwan_core",
    "fastwan-adapters": "packages/fastwan_adapters",
    "fastwan-queue-worker": "apps/queue_worker",
}
#: What the GPU machine's Python has, by the workplace's notes, with what those need.
DEVICE_HAS = frozenset(
    {
        *("torch", "transformers", "huggingface-hub", "safetensors", "numpy", "pillow", "httpx", "h11"),
        *("anyio", "attrs", "prometheus-client", "tqdm", "uvloop"),
        # theirs: torch's, transformers', httpx's
        *("filelock", "fsspec", "jinja2", "markupsafe", "networkx", "sympy", "mpmath", "setuptools"),
        *("typing-extensions", "tokenizers", "regex", "pyyaml", "packaging", "certifi", "httpcore", "idna"),
    }
)
#: Imported by the check (an installed version our code cannot use fails here).
MODULES = (
    "queue_worker.app",
    "fastwan_adapters.generator.diffusers_generator",
    "fastwan_adapters.generator.random_model",
    "fastwan_adapters.encoder",
    "av",
)
#: Versions shown beside the lock's.
SHOWN = ("torch", "transformers", "huggingface-hub", "diffusers", "safetensors", "av")


def requirements(distribution: str) -> list[Requirement]:
    """What ``distribution`` asks for: from its pyproject.toml when it is ours, else its metadata."""
    if distribution in SOURCES:
        project = tomllib.loads((ROOT / SOURCES[distribution] / "pyproject.toml").read_text())["project"]
        listed = project.get("dependencies", [])
    else:
        listed = metadata.requires(distribution) or []
    found = [Requirement(text) for text in listed]
    return [req for req in found if req.marker is None or req.marker.evaluate({"extra": ""})]


def closure(stop: frozenset[str] = frozenset()) -> Iterator[tuple[str, Requirement, str]]:
    """Every requirement the session's distributions need, with who needs it, breadth first;
    what is in ``stop`` is listed but not followed, nor is what is not installed."""
    queue = deque((req, "fastwan-queue-worker") for req in requirements("fastwan-queue-worker"))
    listed: set[str] = set()
    followed: set[str] = set()
    while queue:
        req, needed_by = queue.popleft()
        name = canonicalize_name(req.name)
        if f"{name} {req.specifier}" in listed:
            continue
        listed.add(f"{name} {req.specifier}")
        yield name, req, needed_by
        if name in stop or name in followed:
            continue
        followed.add(name)
        try:
            queue.extend((sub, name) for sub in requirements(name))
        except metadata.PackageNotFoundError:
            continue


def check() -> tuple[str, bool]:
    """The one line, and whether everything is there."""
    missing: list[str] = []
    # What the device's own packages need is theirs to have: only ours are followed.
    for name, req, needed_by in closure(DEVICE_HAS):
        if name in SOURCES:
            continue
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(f"{name} ({needed_by} needs {req})")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(f"{name} {version} ({needed_by} needs {req})")
    broken = []
    for module in MODULES:
        try:
            importlib.import_module(module)
        except Exception as error:  # any failure to import is what this check is for
            broken.append(f"{module}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
    pins = locked()
    versions = []
    for name in SHOWN:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        lock = pins.get(name)
        versions.append(f"{name} {version}" + (f" (lock {lock})" if lock and lock != version else ""))
    line = (
        f"preflight: Python {sys.version.split()[0]}; missing: {', '.join(missing) or 'none'}; "
        f"imports: {'; '.join(broken) or 'ok'}; versions: {', '.join(versions)}; cuda: {cuda()}"
    )
    return line, not missing and not broken


def cuda() -> str:
    """The GPU torch sees, or why none."""
    try:
        import torch
    except ImportError:
        return "no torch"
    if not torch.cuda.is_available():
        return f"none (torch built for CUDA {torch.version.cuda or 'none'})"
    properties = torch.cuda.get_device_properties(0)
    return f"{properties.name}, {properties.total_memory / 1024**3:.1f} GiB, CUDA {torch.version.cuda}"


def locked(lock: Path = ROOT / "locks" / "cu128.txt") -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith(("#", "-")):
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.strip())] = version.split()[0].split(";")[0]
    return pins


def device_wheels() -> list[str]:
    """The lock's pins of everything the session needs that the GPU machine's Python lacks."""
    pins = locked()
    wanted = sorted({name for name, _, _ in closure(DEVICE_HAS)} - DEVICE_HAS - set(SOURCES))
    unpinned = [name for name in wanted if name not in pins]
    if unpinned:
        raise SystemExit(f"not in locks/cu128.txt: {', '.join(unpinned)} (run `make lock`)")
    return [f"{name}=={pins[name]}" for name in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device-wheels", action="store_true", help="print the pins to fetch as wheels")
    args = parser.parse_args(argv)
    if args.device_wheels:
        print("\n".join(device_wheels()))
        return 0
    line, ok = check()
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
