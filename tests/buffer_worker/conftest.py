"""Fixtures of the buffer worker's tests: the orchestrator double and the tiny model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fastwan_adapters.testing import OrchestratorDouble

from .rig import make_rig  # noqa: F401  (a fixture: the claim loop in-process)


@pytest.fixture
def orch() -> Iterator[OrchestratorDouble]:
    with OrchestratorDouble() as double:
        yield double
