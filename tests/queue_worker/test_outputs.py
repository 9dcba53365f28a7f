"""GET /outputs/{name} (local storage): the finished videos of OUTPUT_DIR, nothing else there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.queue_worker.support import Served


@pytest.fixture
def outputs(worker: Served) -> Path:
    store = worker.container.settings().local_store
    assert store is not None
    return store.directory


def test_a_finished_video_is_served_with_ranges(worker: Served, outputs: Path) -> None:
    (outputs / "done-1.mp4").write_bytes(b"finished video bytes")

    whole = worker.client.get("/outputs/done-1.mp4")
    part = worker.client.get("/outputs/done-1.mp4", headers={"Range": "bytes=0-7"})

    assert (whole.status_code, whole.content) == (200, b"finished video bytes")
    assert whole.headers["content-type"] == "video/mp4"
    assert (part.status_code, part.content) == (206, b"finished")


@pytest.mark.parametrize(
    "name",
    [
        ".done-2.mp4.k3j4h5g6.tmp",  # the store's in-flight (or crash-left) temp file
        ".hidden.mp4",
        ".env",
        "done-2.mp4.json",  # the sidecar
        "notes.txt",
        "in-flight.mp4.part",
    ],
)
def test_anything_but_a_finished_video_is_not_found(worker: Served, outputs: Path, name: str) -> None:
    (outputs / name).write_bytes(b"not for the public")

    answer = worker.client.get(f"/outputs/{name}")

    assert answer.status_code == 404
    assert b"not for the public" not in answer.content


def test_a_link_or_a_folder_named_like_a_video_is_not_found(
    worker: Served, outputs: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the folder")
    os.symlink(secret, outputs / "link.mp4")
    (outputs / "inside.mp4").write_bytes(b"a video")
    os.symlink(outputs / "inside.mp4", outputs / "alias.mp4")
    (outputs / "folder.mp4").mkdir()
    (outputs / "folder.mp4" / "x.mp4").write_bytes(b"nested")

    assert worker.client.get("/outputs/link.mp4").status_code == 404
    assert worker.client.get("/outputs/alias.mp4").status_code == 404
    assert worker.client.get("/outputs/folder.mp4").status_code == 404
    assert worker.client.get("/outputs/folder.mp4/x.mp4").status_code == 404
    assert worker.client.get("/outputs/inside.mp4").status_code == 200
