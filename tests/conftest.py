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
