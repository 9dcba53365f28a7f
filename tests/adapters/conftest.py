"""Fixtures of the adapter tests: the tiny model, and an event loop for the async adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.adapters.support import Run, tiny_settings

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


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop of the test's own, for the async adapters (the orchestrator client)."""
    made = asyncio.new_event_loop()
    yield made
    made.close()


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Run:
    """Runs a coroutine to its end on the test's loop."""
    return loop.run_until_complete
