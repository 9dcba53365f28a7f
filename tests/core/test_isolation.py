"""fastwan_core is importable by any service: attrs and cattrs only, nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["torch", "numpy", "httpx", "fastapi", "b2sdk", "diffusers", "PIL", "av", "transformers"]


def test_importing_the_core_pulls_in_nothing_heavy() -> None:
    code = (
        "import json, sys, fastwan_core, fastwan_core.testing, fastwan_core.ports;"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == []


@pytest.mark.slow
def test_installing_the_core_alone_pulls_in_only_attrs_and_cattrs(tmp_path: Path) -> None:
    """What pip would install into an empty environment (a dry run: the same resolver, no venv)."""
    report = tmp_path / "report.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--dry-run",
            "--ignore-installed",
            "--report",
            str(report),
            str(ROOT / "packages" / "fastwan_core"),
        ],
        check=True,
        capture_output=True,
    )
    names = {
        item["metadata"]["name"].lower().replace("_", "-")
        for item in json.loads(report.read_text())["install"]
    }
    allowed = {"fastwan-core", "attrs", "cattrs", "typing-extensions", "exceptiongroup"}
    assert "attrs" in names and "cattrs" in names
    assert names <= allowed, names - allowed
