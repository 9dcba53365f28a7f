"""LocalResultStore on a real temporary folder, and the store chosen from the environment."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from fastwan_adapters.config import ConfigError
from fastwan_adapters.storage import (
    LocalResultStore,
    LocalStoreSettings,
    UploadRetry,
    open_result_store,
    store_settings_from_env,
)
from fastwan_core import EncodedVideo, ErrorCode, JobFailure, Size

METADATA = {"job_id": "job-1", "seed": "42", "model": "FastVideo/FastWan2.2-TI2V-5B-Diffusers"}
NO_WAIT = UploadRetry(wait_initial_s=0.0, wait_max_s=0.0, wait_jitter_s=0.0)


def video(data: bytes = b"fake mp4 bytes") -> EncodedVideo:
    return EncodedVideo(data, Size(720, 1280))


def test_put_writes_the_video_and_returns_its_file_url(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path / "outputs")

    url = store.put("job-1.mp4", video(), METADATA)

    written = tmp_path / "outputs" / "job-1.mp4"
    assert written.read_bytes() == b"fake mp4 bytes"
    assert url == written.as_uri()
    assert Path(unquote(urlparse(url).path)) == written
    assert sorted(p.name for p in written.parent.iterdir()) == ["job-1.mp4", "job-1.mp4.json"]


def test_the_sidecar_holds_the_metadata_and_checksum(tmp_path: Path) -> None:
    clip = video()
    LocalResultStore(tmp_path).put("job-1.mp4", clip, METADATA)

    sidecar = json.loads((tmp_path / "job-1.mp4.json").read_text())
    assert sidecar == METADATA | {
        "content_type": "video/mp4",
        "sha1": clip.sha1,
        "size_bytes": str(len(clip.data)),
    }


def test_base_url_gives_an_http_url_with_the_name_quoted(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path, base_url="http://worker:8000/outputs/")

    assert store.put("job 1.mp4", video(), METADATA) == "http://worker:8000/outputs/job%201.mp4"
    assert (tmp_path / "job 1.mp4").read_bytes() == b"fake mp4 bytes"


def test_running_a_job_again_overwrites_the_same_file(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path)

    first = store.put("job-1.mp4", video(b"first take"), METADATA)
    second = store.put("job-1.mp4", video(b"second take"), METADATA | {"seed": "7"})

    assert first == second
    assert (tmp_path / "job-1.mp4").read_bytes() == b"second take"
    assert json.loads((tmp_path / "job-1.mp4.json").read_text())["seed"] == "7"


def test_a_failed_write_leaves_the_previous_file_whole_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalResultStore(tmp_path, retry=NO_WAIT)
    store.put("job-1.mp4", video(b"previous"), METADATA)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(JobFailure) as caught:
        store.put("job-1.mp4", video(b"half of the new one"), METADATA)

    assert caught.value.code is ErrorCode.UPLOAD_FAILED
    assert caught.value.retryable is True
    assert "No space left on device" in caught.value.message
    assert (tmp_path / "job-1.mp4").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job-1.mp4", "job-1.mp4.json"]


@pytest.mark.parametrize("full_at", ["job-1.mp4", "job-1.mp4.json"])
def test_a_disk_full_at_either_file_names_it_and_changes_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full_at: str
) -> None:
    store = LocalResultStore(tmp_path, retry=NO_WAIT)
    store.put("job-1.mp4", video(b"previous"), METADATA)
    previous_sidecar = (tmp_path / "job-1.mp4.json").read_bytes()
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, prefix: str = "", **kwargs: Any) -> tuple[int, str]:
        if prefix == f".{full_at}.":  # the temp file of the write that meets the full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(JobFailure) as caught:
        store.put("job-1.mp4", video(b"the new one"), METADATA | {"seed": "7"})

    assert (caught.value.code, caught.value.retryable) == (ErrorCode.UPLOAD_FAILED, True)
    assert f"could not write {full_at} " in caught.value.message
    assert "No space left on device" in caught.value.message
    assert (tmp_path / "job-1.mp4").read_bytes() == b"previous"
    assert (tmp_path / "job-1.mp4.json").read_bytes() == previous_sidecar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job-1.mp4", "job-1.mp4.json"]


def test_a_folder_unusable_for_two_writes_is_waited_out_and_the_job_stored(tmp_path: Path) -> None:
    """Issue 21, chaos seed 8024: OUTPUT_DIR replaced by a file for 2.6 s failed the job at once."""
    folder = tmp_path / "outputs"
    folder.write_text("not a folder for a moment")
    waits: list[float] = []

    def wait(seconds: float) -> None:  # the folder comes back during the second wait
        waits.append(seconds)
        if len(waits) == 2:
            folder.unlink()
            folder.mkdir()

    store = LocalResultStore(folder, retry=UploadRetry(attempts=3, sleep=wait))
    url = store.put("job-1.mp4", video(), METADATA)

    assert len(waits) == 2
    assert (folder / "job-1.mp4").read_bytes() == b"fake mp4 bytes"
    assert url == (folder / "job-1.mp4").as_uri()
    assert json.loads((folder / "job-1.mp4.json").read_text())["job_id"] == "job-1"


def test_a_folder_that_stays_unusable_fails_the_job_upload_failed_after_the_last_try(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "outputs"
    folder.write_text("not a folder")
    waits: list[float] = []
    store = LocalResultStore(folder, retry=UploadRetry(attempts=3, sleep=waits.append))

    with pytest.raises(JobFailure) as caught:
        store.put("job-1.mp4", video(), METADATA)

    assert len(waits) == 2  # three tries in all, then the job fails
    assert all(0.0 < wait <= UploadRetry().wait_max_s for wait in waits)
    assert (caught.value.code, caught.value.retryable) == (ErrorCode.UPLOAD_FAILED, True)
    assert f"OUTPUT_DIR {str(folder)!r}" in caught.value.message
    assert folder.read_text() == "not a folder"


def test_a_new_video_never_appears_without_its_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalResultStore(tmp_path)
    seen: list[tuple[str, list[str]]] = []
    real_replace = Path.replace

    def replace(self: Path, target: Any) -> Path:
        seen.append(
            (Path(target).name, sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")))
        )
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    store.put("job-1.mp4", video(), METADATA)

    assert seen == [("job-1.mp4.json", []), ("job-1.mp4", ["job-1.mp4.json"])]


@pytest.mark.parametrize(
    "name", ["../escape.mp4", "sub/dir.mp4", "..", ".", ".hidden.mp4", "", "a\\b.mp4", "a\nb"]
)
def test_a_name_that_is_not_one_plain_segment_is_refused(tmp_path: Path, name: str) -> None:
    store = LocalResultStore(tmp_path / "outputs")

    with pytest.raises(JobFailure) as caught:
        store.put(name, video(), METADATA)

    assert caught.value.code is ErrorCode.UPLOAD_FAILED
    assert caught.value.retryable is False
    assert list(tmp_path.rglob("*")) == []


def test_the_output_folder_is_created_when_missing(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path / "a" / "b")

    store.put("job-1.mp4", video(), METADATA)

    assert (tmp_path / "a" / "b" / "job-1.mp4").is_file()


def test_files_are_readable_by_others_despite_the_private_temp_file(tmp_path: Path) -> None:
    LocalResultStore(tmp_path).put("job-1.mp4", video(), METADATA)

    assert (tmp_path / "job-1.mp4").stat().st_mode & 0o777 == 0o644


# --- from the environment -------------------------------------------------------------------


def test_from_env_uses_output_dir_and_creates_it(tmp_path: Path) -> None:
    store = LocalResultStore.open(LocalStoreSettings.from_env({"OUTPUT_DIR": str(tmp_path / "new")}))

    assert store.directory == (tmp_path / "new").resolve()
    assert store.directory.is_dir()


def test_from_env_defaults_to_outputs_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert LocalResultStore.open(LocalStoreSettings.from_env({})).directory == tmp_path.resolve() / "outputs"


def test_an_output_dir_that_cannot_be_created_names_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    with pytest.raises(ConfigError, match="OUTPUT_DIR"):
        LocalResultStore.open(LocalStoreSettings.from_env({"OUTPUT_DIR": str(blocker / "outputs")}))


def test_without_b2_variables_the_local_store_is_chosen(tmp_path: Path) -> None:
    store = open_result_store(
        store_settings_from_env({"OUTPUT_DIR": str(tmp_path)}, local_base_url="http://w/outputs")
    )

    assert isinstance(store, LocalResultStore)
    assert store.put("job-1.mp4", video(), METADATA) == "http://w/outputs/job-1.mp4"
    assert sorted(os.listdir(tmp_path)) == ["job-1.mp4", "job-1.mp4.json"]


def test_half_set_b2_variables_stop_start_up_instead_of_falling_back(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="B2_APP_KEY, B2_BUCKET_NAME must be set"):
        store_settings_from_env({"OUTPUT_DIR": str(tmp_path), "B2_KEY_ID": "kid"})


def test_a_read_only_output_dir_is_a_configuration_error_for_root_too(tmp_path: Path) -> None:
    """Permission bits do not stop root, a read-only mount does: the check writes a file."""
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    check = (
        "from fastwan_adapters.config import ConfigError\n"
        "from fastwan_adapters.storage import LocalStoreSettings\n"
        "try:\n"
        f"    LocalStoreSettings.from_env({{'OUTPUT_DIR': {str(outputs)!r}}}).create_directory()\n"
        "except ConfigError as error:\n"
        "    print(error)\n"
    )
    command = [sys.executable, "-c", check]
    if os.geteuid() != 0:
        outputs.chmod(0o555)
    else:
        read_only = [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"',
        ]
        probe = [
            *read_only,
            str(outputs),
            "sh",
            "-c",
            'touch "$0"/probe 2>/dev/null && exit 1 || exit 0',
            str(outputs),
        ]
        if (
            shutil.which("unshare") is None
            or subprocess.run(probe, capture_output=True, check=False).returncode
        ):
            pytest.skip("root without a private mount namespace: no read-only folder to test with")
        command = [*read_only, str(outputs), *command]

    run = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert f"OUTPUT_DIR {str(outputs)!r} cannot be written" in run.stdout, run.stdout + run.stderr
