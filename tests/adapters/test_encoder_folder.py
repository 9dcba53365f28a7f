"""The encoder's temporary files: a folder of each worker's own; what killed workers left, swept at start."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fastwan_adapters.config import ConfigError
from fastwan_adapters.encoder import EncoderFolder, EncoderSettings, build_encoder
from fastwan_core.values import Size
from tests.adapters.test_encoder import encode

# Another worker process: claims its folder, starts an MP4 there as the encoder does, says
# where, then waits (alive, holding its folder) or is killed as SIGKILL kills a worker mid-job.
_WORKER = """
import sys
from pathlib import Path
from fastwan_adapters.encoder import EncoderFolder, PyAVEncoder
from fastwan_core.values import Size
folder = EncoderFolder.claim(Path(sys.argv[1]))
writer = PyAVEncoder(temp_dir=folder.path, x264_params="mbtree=0").writer(Size(64, 64), 8)
print(writer._path, flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def other_worker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A running worker process with a partial MP4 in its folder under ``tmp_path / "tmp"``."""
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(tmp_path / "tmp")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    partial = Path(process.stdout.readline().strip())
    yield process, partial
    process.kill()
    process.wait()


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def frames(count: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 64, 64, 3), dtype=np.uint8)


def test_a_killed_worker_s_partial_mp4_is_gone_after_start_and_the_encoder_works(
    tmp_path: Path, other_worker: tuple[subprocess.Popen[str], Path]
) -> None:
    process, partial = other_worker
    assert partial.is_file() and partial.is_relative_to(tmp_path / "tmp")
    kill(process)
    assert partial.is_file()  # what a SIGKILL mid-job leaves behind

    env = {"FASTWAN_ENCODER": "libx264", "FASTWAN_TEMP_DIR": str(tmp_path / "tmp")}
    settings = EncoderSettings.from_env(env)
    encoder = build_encoder(settings)

    assert not partial.exists() and not partial.parent.parent.exists()  # its worker folder too
    video = encode(encoder, frames(), Size(64, 64), 8)
    assert video.data[4:8] == b"ftyp" and video.size == Size(64, 64)
    (root,) = (tmp_path / "tmp").iterdir()
    (mine,) = (path for path in root.iterdir() if path.name.startswith("worker-"))
    assert list(mine.iterdir()) == []  # the encode's own temporary file is gone with the call


def test_a_running_worker_s_folder_is_left_alone(
    tmp_path: Path, other_worker: tuple[subprocess.Popen[str], Path]
) -> None:
    process, partial = other_worker

    mine = EncoderFolder.claim(tmp_path / "tmp")
    try:
        assert partial.is_file()  # the other worker is still writing it
        assert mine.path.parent == partial.parent.parent.parent and mine.path != partial.parent.parent
        kill(process)
        EncoderFolder.claim(tmp_path / "tmp").close()  # the next start, the other worker dead

        assert not partial.exists()
        assert mine.path.is_dir()  # this process's own, still held, is kept
    finally:
        mine.close()
    assert not mine.path.exists()


def test_the_folders_are_private_and_only_the_encoder_s_are_swept(tmp_path: Path) -> None:
    first = EncoderFolder.claim(tmp_path)
    root = first.path.parent
    (root / "notes.txt").write_text("not the encoder's")
    first.close()

    second = EncoderFolder.claim(tmp_path)
    try:
        assert root.name == f"fastwan-encode-{os.getuid()}"
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert stat.S_IMODE(second.path.stat().st_mode) == 0o700
        assert (root / "notes.txt").read_text() == "not the encoder's"
    finally:
        second.close()


def test_a_planted_root_is_refused_naming_the_variable(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / f"fastwan-encode-{os.getuid()}").symlink_to(elsewhere)

    with pytest.raises(ConfigError, match=r"FASTWAN_TEMP_DIR.*not a folder of this user"):
        EncoderFolder.claim(tmp_path / "tmp")


def test_an_unusable_folder_is_a_configuration_error_naming_the_variable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    with pytest.raises(ConfigError, match="FASTWAN_TEMP_DIR"):
        build_encoder(EncoderSettings(encoder="libx264", temp_dir=tmp_path / "file"))


def test_the_default_is_the_system_temp_folder() -> None:
    assert EncoderSettings.from_env({}).temp_dir is None
    assert EncoderSettings.from_env({"FASTWAN_TEMP_DIR": "/var/tmp/w"}).temp_dir == Path("/var/tmp/w")
