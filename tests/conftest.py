"""Fixtures shared by every test folder."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Wan 2.2 model (``FASTWAN_MODEL=tiny``), built once per session.

    Built offline and loaded through the same ``from_pretrained`` path as the real model; worker
    processes started by the tests get it as ``FASTWAN_TINY_DIR``.
    """
    from fastwan_adapters.generator.tiny import ensure_tiny_model

    return ensure_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_sparse_dir(tiny_dir: Path) -> Path:
    """``FASTWAN_MODEL=tiny-sparse`` (the tiny model plus random VSA gates), beside ``tiny_dir``.

    Where the worker looks for it when ``FASTWAN_TINY_DIR`` is ``tiny_dir``.
    """
    from fastwan_adapters.generator.tiny import ensure_tiny_model

    return ensure_tiny_model(tiny_dir.with_name(f"{tiny_dir.name}-sparse"), sparse=True)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """For a test that calls ``configure_logging`` (an app's ``main`` does): pytest's logging is
    put back afterwards, so that no later line goes to a stream the test's capture has closed."""
    root = logging.getLogger()
    handlers, level, hook = root.handlers[:], root.level, sys.excepthook
    yield
    root.handlers[:], sys.excepthook = handlers, hook
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()
