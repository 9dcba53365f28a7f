"""Fixtures of the adapter tests that run the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.adapters.support import tiny_settings

if TYPE_CHECKING:
    from fastwan_adapters.generator import DiffusersGenerator


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """The tiny model gains nothing from threads, and on a shared machine they spin against each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def generator(tiny_dir: Path) -> Iterator[DiffusersGenerator]:
    """The tiny model loaded once per test module (the test modules that ask for it)."""
    from fastwan_adapters.generator import DiffusersGenerator

    loaded = DiffusersGenerator.load(tiny_settings(tiny_dir))
    yield loaded
    loaded.close()
