"""Fixtures of the queue worker's tests (helpers live in ``support``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.queue_worker.support import Fakes, Served, fake_container, serving, settings_for


@pytest.fixture(scope="module")
def module_fakes() -> Fakes:
    return Fakes()


@pytest.fixture(scope="module")
def worker(module_fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ready worker of fakes for a whole module; tests make its fakes fail as they need."""
    settings = settings_for(tmp_path_factory.mktemp("worker"))
    with serving(fake_container(settings, module_fakes)) as served:
        yield served


@pytest.fixture
def fakes(module_fakes: Fakes) -> Iterator[Fakes]:
    """The module worker's fakes, as each test left them reset for the next."""
    yield module_fakes
    module_fakes.reset()
