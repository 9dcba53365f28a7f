"""`make typecheck` runs `mypy` with the root pyproject.toml: every distribution's source is in
its `files`, strict, so a new distribution (or one dropped from the list) cannot go unchecked."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MYPY = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def test_mypy_checks_every_distribution_strict() -> None:
    sources = sorted(
        path.parent.joinpath("src").relative_to(ROOT).as_posix()
        for path in [*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("apps/*/pyproject.toml")]
    )
    assert len(sources) == 5
    assert sorted(MYPY["files"]) == sources
    assert MYPY["strict"] is True


def test_every_mypy_override_says_why() -> None:
    """Each `[[tool.mypy.overrides]]` table has a comment right above it giving its reason."""
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    tables = [index for index, line in enumerate(lines) if line.strip() == "[[tool.mypy.overrides]]"]
    assert tables
    for index in tables:
        assert lines[index - 1].startswith("# "), f"pyproject.toml line {index + 1}: no reason above it"
