"""The production build's steps, pinned: the CPU twin's build arguments must not change them.

tests/docker/production_steps.txt holds the steps docker/Dockerfile.fastwan builds with no
``--build-arg`` (tests/docker/steps.py renders them). It was checked against the Dockerfile
before the twin's arguments existed: the same 36 steps in the same order, differing only where
an argument now stands (docs/deploy.md, "The CPU twin"). A change to it is a change to what
Salad and Vast run: regenerate it with ``python -m tests.docker.steps >
tests/docker/production_steps.txt`` and say so in the commit.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.docker.steps import render

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile.fastwan"
PINNED = Path(__file__).with_name("production_steps.txt")
TWIN_BUILD = ROOT / "docker" / "build_twin.sh"


def twin_build_args() -> dict[str, str]:
    """The ``--build-arg NAME=VALUE`` that docker/build_twin.sh passes."""
    found = re.findall(r"--build-arg (\w+)=(\S+)", TWIN_BUILD.read_text())
    assert found, "docker/build_twin.sh passes no --build-arg"
    return {name: value.strip('"') for name, value in found}


def test_the_production_defaults_build_the_pinned_steps() -> None:
    assert render(DOCKERFILE.read_text()) == PINNED.read_text().splitlines()


def test_the_twin_builds_the_same_steps_in_the_same_order() -> None:
    production = render(DOCKERFILE.read_text())
    twin = render(DOCKERFILE.read_text(), twin_build_args())

    assert [step.split()[0] for step in twin] == [step.split()[0] for step in production]
    assert twin != production
    assert twin[0].startswith("FROM ${TWIN_BASE} AS python-base")


def test_every_build_argument_the_twin_passes_is_one_the_dockerfile_declares() -> None:
    """A misspelt argument would be ignored, and the twin would quietly build production's step."""
    declared = set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), flags=re.MULTILINE))

    assert set(twin_build_args()) - declared == set()
