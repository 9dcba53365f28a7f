"""The image tests run the built CPU twin (``make image-test``), so the default ``make test`` run
does not collect them: it has no image to run, and building one takes minutes.

``FASTWAN_IMAGE_TESTS=1`` (set by ``make image-test``) collects them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.image.twin import Twin, twin_or_skip

collect_ignore_glob = [] if os.environ.get("FASTWAN_IMAGE_TESTS") == "1" else ["test_*.py"]


@pytest.fixture(scope="session")
def twin() -> Twin:
    """The built image; skipped (failed under CI) when it or buildah is missing."""
    return twin_or_skip()


@pytest.fixture
def container(twin: Twin) -> Iterator[str]:
    """A fresh working container of the image, removed after the test."""
    name = twin.new_container()
    yield name
    twin.remove_container(name)
