"""Fixtures of the buffer worker's tests: the orchestrator double and the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fastwan_adapters.testing import OrchestratorDouble


@pytest.fixture
def orch() -> Iterator[OrchestratorDouble]:
    with OrchestratorDouble() as double:
        yield double


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, built once for the whole session and shared by every worker process."""
    from fastwan_adapters.generator.tiny import ensure_tiny_model

    return ensure_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
