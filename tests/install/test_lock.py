"""The locks: `make install` installs from locks/cpu.txt, the image from locks/cu128.txt, and
both hold every third-party version, the same ones, consistent with what the pyprojects ask.

The environment the tests run in is checked against the lock it was installed from, told by
torch's build (its version's local label): the CPU build (``2.13.0+cpu``) comes from
locks/cpu.txt, the image's CUDA 12.8 build (``2.13.0+cu128``) from locks/cu128.txt, which leaves
torch's CUDA libraries (``nvidia-*``, ``triton``) to the pins in torch's own metadata."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
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


def lock_installed_from(torch_version: Version) -> Path:
    """The lock an environment with this torch was installed from: ``+cpu`` (or no label, as
    ``make install`` writes it) is locks/cpu.txt, ``+cu128`` locks/cu128.txt (the image's)."""
    lock = {"cpu": CPU_LOCK, "cu128": CUDA_LOCK}.get(torch_version.local or "cpu")
    assert lock is not None, (
        f"torch {torch_version} is a build no lock describes: `make install` (locks/cpu.txt) "
        "installs the CPU build, the image (locks/cu128.txt) the CUDA 12.8 one"
    )
    return lock


def torch_pins(requires: Iterable[str]) -> dict[str, SpecifierSet]:
    """What torch's metadata (``Requires-Dist``) asks of its CUDA libraries, by name."""
    wanted = {canonicalize_name(req.name): req.specifier for req in map(Requirement, requires)}
    return {name: specifier for name, specifier in wanted.items() if CUDA_RUNTIME.match(name)}


def mismatches(
    installed: Iterable[tuple[str, Version]], lock: Path, torch_requires: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Installed packages that ``lock`` does not pin (stray), and those at another version than
    it pins (drift). With locks/cu128.txt, the CUDA libraries are held to torch's own pins."""
    locked = pins(lock)
    from_torch = torch_pins(torch_requires) if lock == CUDA_LOCK else {}
    stray, drift = [], []
    for name, version in sorted(installed):
        if name in from_torch:
            if not from_torch[name].contains(version, prereleases=True):
                drift.append(f"{name}: {version} installed, torch asks for {from_torch[name]}")
        elif name not in locked:
            stray.append(f"{name}=={version}")
        elif version.public != locked[name].public:  # torch 2.13.0+cpu is the lock's 2.13.0
            drift.append(f"{name}: {version} installed, {locked[name]} locked")
    return stray, drift


def installed_here() -> list[tuple[str, Version]]:
    """Every third-party distribution of this environment (ours, pip and vendored copies aside)."""
    found: list[tuple[str, Version]] = []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name not in OURS and name != "pip" and not _vendored(dist):
            found.append((name, Version(dist.version)))
    return found


def test_the_lock_pins_every_package_in_this_environment_at_its_installed_version() -> None:
    lock = lock_installed_from(Version(metadata.version("torch")))  # the torch that is imported
    stray, drift = mismatches(installed_here(), lock, metadata.requires("torch") or [])
    name = lock.relative_to(ROOT)
    assert stray == [], f"installed but not in {name} (add it to a pyproject and `make lock`)"
    assert drift == [], f"not the version {name} locks: reinstall from it (`make install`)"


# torch 2.13.0+cu128's CUDA libraries as its metadata pins them (of that kind: the real list is longer).
_CU128_LIBRARIES = {
    "nvidia-cuda-runtime-cu12": "12.8.90",
    "nvidia-cublas-cu12": "12.8.4.1",
    "nvidia-cudnn-cu12": "9.10.2.21",
    "triton": "3.7.0",
}
_CU128_REQUIRES = [
    *(f'{name}=={version}; platform_system == "Linux"' for name, version in _CU128_LIBRARIES.items()),
    "filelock",
    'optree>=0.13.0; extra == "optree"',
]


def _image_environment(**changes: str) -> dict[str, Version]:
    """What the image installs: locks/cu128.txt, torch's CUDA build and its CUDA libraries."""
    locked = pins(CUDA_LOCK)
    installed = {**locked, "torch": Version(f"{locked['torch']}+cu128")}
    return installed | {name: Version(version) for name, version in {**_CU128_LIBRARIES, **changes}.items()}


def test_the_image_environment_is_checked_against_locks_cu128_and_torchs_own_cuda_pins() -> None:
    """Python 3.12 with locks/cu128.txt, faked: checked against locks/cpu.txt, torch's CUDA
    libraries were "installed but not locked" and the test failed there."""
    image = _image_environment()
    assert lock_installed_from(image["torch"]) == CUDA_LOCK
    assert mismatches(image.items(), CUDA_LOCK, _CU128_REQUIRES) == ([], [])
    assert mismatches(image.items(), CPU_LOCK, _CU128_REQUIRES)[0] != []  # the wrong lock: what failed

    drifted = _image_environment(**{"nvidia-cublas-cu12": "12.9.1.4", "numpy": "2.0.0"})
    stray, drift = mismatches(drifted.items(), CUDA_LOCK, _CU128_REQUIRES)
    assert stray == []
    assert [line.split(":")[0] for line in drift] == ["numpy", "nvidia-cublas-cu12"]
    extra = _image_environment(**{"nvidia-nccl-cu12": "2.27.3"})  # not one torch asks for
    assert mismatches(extra.items(), CUDA_LOCK, _CU128_REQUIRES)[0] == ["nvidia-nccl-cu12==2.27.3"]


def test_the_make_install_environment_is_checked_against_locks_cpu_with_no_cuda_library() -> None:
    cpu = pins(CPU_LOCK)
    for torch in ("2.13.0+cpu", "2.13.0"):
        assert lock_installed_from(Version(torch)) == CPU_LOCK
        assert mismatches({**cpu, "torch": Version(torch)}.items(), CPU_LOCK, []) == ([], [])
    # PyPI's default Linux torch is a CUDA build: its libraries are no part of locks/cpu.txt.
    with_cuda = {**cpu, "nvidia-cublas-cu12": Version("12.8.4.1")}
    assert mismatches(with_cuda.items(), CPU_LOCK, _CU128_REQUIRES)[0] == ["nvidia-cublas-cu12==12.8.4.1"]
    with pytest.raises(AssertionError, match=r"torch 2\.13\.0\+cu126 is a build no lock describes"):
        lock_installed_from(Version("2.13.0+cu126"))


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
