"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest


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
