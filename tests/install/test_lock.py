"""The locks: `make install` installs from locks/cpu.txt, the image from locks/cu128.txt, and
both hold every third-party version, the same ones, consistent with what the pyprojects ask."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CPU_LOCK = ROOT / "locks" / "cpu.txt"
CUDA_LOCK = ROOT / "locks" / "cu128.txt"
PYPROJECTS = sorted([*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("apps/*/pyproject.toml")])
OURS = {canonicalize_name(tomllib.loads(path.read_text())["project"]["name"]) for path in PYPROJECTS}
# Left to PyTorch's cu128 wheel, which pins them itself (locks/refresh.py).
CUDA_RUNTIME = re.compile(r"^(nvidia-|cuda-|triton$)")


def pins(lock: Path) -> dict[str, Version]:
    found = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock.read_text(), flags=re.MULTILINE)
    return {canonicalize_name(name): Version(version) for name, version in found}


def direct_requirements() -> list[Requirement]:
    """What our distributions (with their test extras) and requirements-dev.txt ask for."""
    wanted = []
    for path in PYPROJECTS:
        project = tomllib.loads(path.read_text())["project"]
        wanted += project.get("dependencies", []) + project.get("optional-dependencies", {}).get("test", [])
    dev = (ROOT / "requirements-dev.txt").read_text().splitlines()
    wanted += [line for line in dev if line.strip() and not line.startswith("#")]
    return [Requirement(text) for text in wanted if canonicalize_name(Requirement(text).name) not in OURS]


def test_make_install_installs_the_lock_and_our_distributions_editable(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    plan = subprocess.run(
        ["make", "-n", "install", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installs = [line for line in plan.splitlines() if re.search(r"/pip install (?!-q --upgrade pip)", line)]
    assert len(installs) == 1, plan  # one pip call, so the lock bounds every choice it makes
    (install,) = installs
    assert " -r locks/cpu.txt " in f"{install} "
    editable = sorted(re.findall(r'-e "([^"\[]+)\[test\]"', install))
    assert editable == sorted(path.parent.relative_to(ROOT).as_posix() for path in PYPROJECTS)
    # Nothing beside the lock names a version of its own (torch included: the lock pins it).
    assert "torch" not in install and "requirements-dev.txt" not in install


def test_every_requirement_is_pinned_by_the_lock_at_a_version_it_allows() -> None:
    """A pyproject that asks for more than the lock has (diffusers>=0.39 and an old pin) fails
    here, and pip would refuse the install: run `make lock`."""
    locked = pins(CPU_LOCK)
    for requirement in direct_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": "test"}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in locks/cpu.txt: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"locks/cpu.txt pins {name}=={locked[name]}, which {requirement} refuses: run `make lock`"
        )
    assert locked[canonicalize_name("diffusers")] >= Version("0.39")
    assert {"imageio", "imageio-ffmpeg"} <= set(locked)  # bench/encode.py's export_to_video


def test_the_lock_pins_every_package_in_this_environment_at_its_installed_version() -> None:
    locked = pins(CPU_LOCK)
    stray, drift = [], []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in OURS or name == "pip" or _vendored(dist):
            continue
        installed = Version(dist.version)
        if name not in locked:
            stray.append(f"{name}=={installed}")
        elif installed.public != locked[name].public:  # torch 2.13.0+cpu is the lock's 2.13.0
            drift.append(f"{name}: {installed} installed, {locked[name]} locked")
    assert stray == [], "installed but not locked (add it to a pyproject and `make lock`)"
    assert drift == [], "not the locked version: run `make install`"


def _vendored(dist: metadata.Distribution) -> bool:
    """A package another one ships inside itself: setuptools puts its ``_vendor`` folder on
    ``sys.path`` once imported (torch.compile's inductor imports it), and its copies then show."""
    return "_vendor" in Path(str(dist.locate_file(""))).parts


def test_the_image_lock_has_the_same_versions_and_leaves_torchs_cuda_libraries_to_torch() -> None:
    cpu, cuda = pins(CPU_LOCK), pins(CUDA_LOCK)
    assert cuda == cpu
    assert [name for name in cpu if CUDA_RUNTIME.match(name)] == []
    makefile = re.search(r"^TORCH_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    assert makefile is not None
    assert cpu["torch"] == Version(makefile.group(1))  # no local label: any 2.13.0 build fits
