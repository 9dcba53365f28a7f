"""The GPU session's one command, checked on the CPU: ``TINY=1 bash bench/gpu_session.sh`` runs every
part at small shapes, and says on one line per part how it ended; the preflight says what is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = [
    "preflight",
    "model",
    "e2e-resident",
    "e2e-10gib",
    "attention",
    "steps",
    "decode",
    "e2e-16gib",
    "e2e-24gib",
]


def session(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    full_env = {
        **os.environ,
        "TINY": "1",
        "PYTHON": sys.executable,
        "OUT": str(tmp_path / "out"),
        "WORK_DIR": str(tmp_path / "work"),
        **env,
    }
    result = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_session.sh")],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return result, [line for line in result.stdout.splitlines() if line.startswith("== ")]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_runs_every_part_on_the_cpu_and_keeps_what_each_found(tmp_path: Path) -> None:
    result, lines = session(tmp_path)

    assert [line.removeprefix("== ").split(":")[0] for line in lines] == PARTS, result.stdout[-4000:]
    assert [line for line in lines if not line.endswith(", exit 0")] == [], result.stdout[-6000:]
    assert (tmp_path / "out" / "session.log").read_text() == result.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["parts"] == lines
    profiles = {part: results[part]["worker"]["memory_profile"] for part in PARTS if part.startswith("e2e")}
    assert profiles == {
        "e2e-resident": "resident",  # the CPU without a cap: everything resident
        "e2e-10gib": "cpu-offload",
        "e2e-16gib": "cpu-offload",
        "e2e-24gib": "text-encoder-offload",
    }
    jobs = [(job["job"], job["status"], job["mp4"]["frames"]) for job in results["e2e-resident"]["jobs"]]
    assert jobs == [("i2v", 200, 5), ("t2v", 200, 5)]
    assert results["e2e-resident"]["jobs"][0]["answer"]["metrics"]["timings"]["denoise_s"] > 0
    assert results["model"]["size"] == "tiny"


def test_a_part_that_cannot_get_the_time_it_needs_is_skipped_and_says_so(tmp_path: Path) -> None:
    result, lines = session(tmp_path, BUDGET_S="5")

    assert result.returncode == 0
    assert [line.removeprefix("== ").split(":")[0] for line in lines] == PARTS
    assert lines[0].startswith("== preflight: skipped, it needs 10 s and ")
    assert all(line.endswith(", exit skipped") for line in lines)
    assert json.loads((tmp_path / "out" / "results.json").read_text())["parts"] == lines


def test_without_a_model_the_workers_parts_are_skipped(tmp_path: Path) -> None:
    foreign = tmp_path / "work" / "tiny-model"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("not a model")

    result, lines = session(tmp_path, PARTS="model e2e-resident")

    assert lines[1].startswith("== model: failed in "), result.stdout[-3000:]
    assert "--out: " in result.stdout and "holds no tiny model built by this worker" in result.stdout
    assert lines[2] == "== e2e-resident: skipped, no model (the model part ended with exit 2), exit skipped"
    assert [line for line in lines if "not in PARTS" in line] == [
        f"== {part}: skipped, not in PARTS, exit skipped"
        for part in PARTS
        if part not in ("model", "e2e-resident")
    ]
    assert (foreign / "notes.txt").read_text() == "not a model"


def preflight() -> ModuleType:
    spec = importlib.util.spec_from_file_location("preflight", ROOT / "bench" / "preflight.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_preflight_names_what_is_missing_and_what_is_too_old(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version

    def version(name: str) -> str:
        if name == "av":
            raise metadata.PackageNotFoundError(name)
        return "0.30.0" if name == "diffusers" else real(name)

    checker = preflight()
    monkeypatch.setattr(checker.metadata, "version", version)

    line, ok = checker.check()

    assert not ok
    assert line.startswith("preflight: Python ")
    missing = line.split("; missing: ")[1].split("; imports: ")[0]
    assert (
        missing
        == "diffusers 0.30.0 (fastwan-adapters needs diffusers>=0.39), av (fastwan-adapters needs av>=18)"
    )


def test_the_device_wheels_are_what_the_gpu_machine_lacks_pinned_by_the_lock() -> None:
    wheels = preflight().device_wheels()

    names = {pin.split("==")[0] for pin in wheels}
    assert {"diffusers", "av", "fastapi", "uvicorn", "dependency-injector", "cattrs", "b2sdk"} <= names
    assert not names & {"torch", "transformers", "huggingface-hub", "numpy", "fastwan-core"}
    assert "diffusers==0.42.1" in wheels
