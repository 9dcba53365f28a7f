"""The claim journal: a claimed job on disk until its status is in the outbox; what an earlier
run left is read back oldest first; what cannot be read is set aside, never a crash."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from fastwan_adapters.orchestrator import ClaimJournal
from fastwan_adapters.storage import LocalResultStore


def test_a_recorded_claim_outlives_the_process_until_it_is_forgotten(tmp_path: Path) -> None:
    ClaimJournal(tmp_path).record("b-1", "job-1")
    ClaimJournal(tmp_path).record("b-2", None)

    later = ClaimJournal(tmp_path)  # a restart on the same STATE_DIR
    assert [(e.buffer_job_id, e.musetalk_job_id) for e in later.orphans()] == [
        ("b-1", "job-1"),
        ("b-2", None),
    ]
    later.forget("b-1")
    later.forget("never-claimed")
    assert [e.buffer_job_id for e in ClaimJournal(tmp_path).orphans()] == ["b-2"]


def test_a_record_cut_short_before_its_rename_is_cleared_at_start(tmp_path: Path) -> None:
    journal = ClaimJournal(tmp_path)
    leftover = journal.directory / ".tmp-b-1.claim.json.x1y2z3.tmp"
    leftover.write_text("{")

    assert ClaimJournal(tmp_path).orphans() == []
    assert not leftover.exists()


def test_an_unreadable_entry_is_set_aside_with_an_error_and_the_others_are_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = ClaimJournal(tmp_path)
    journal.record("b-good", "job-good")
    (journal.directory / "b-bad.claim.json").write_text('{"buffer_job_id": "b-bad"')

    with caplog.at_level(logging.ERROR):
        assert [e.buffer_job_id for e in journal.orphans()] == ["b-good"]

    assert (journal.directory / "b-bad.claim.json.corrupt").exists()
    assert not (journal.directory / "b-bad.claim.json").exists()
    assert "b-bad.claim.json is unreadable" in caplog.text
    assert [e.buffer_job_id for e in journal.orphans()] == ["b-good"]  # once, not at every start


def test_a_file_where_the_journal_folder_should_be_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "claim-journal").write_bytes(b"\x00garbage")

    with caplog.at_level(logging.ERROR):
        journal = ClaimJournal(tmp_path)

    assert "cannot be read (it is not a folder)" in caplog.text
    assert journal.orphans() == []
    journal.record("b-1", "job-1")
    assert [e.buffer_job_id for e in journal.orphans()] == ["b-1"]
    assert len(list(tmp_path.glob("claim-journal.unreadable-*"))) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_a_folder_that_cannot_be_listed_is_moved_aside_and_the_journal_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = ClaimJournal(tmp_path)
    journal.record("b-1", "job-1")
    journal.directory.chmod(0)
    try:
        with caplog.at_level(logging.ERROR):
            assert journal.orphans() == []
        assert "cannot be read" in caplog.text
        journal.record("b-2", "job-2")
        assert [e.buffer_job_id for e in journal.orphans()] == ["b-2"]
    finally:
        for aside in tmp_path.glob("claim-journal.unreadable-*"):
            aside.chmod(0o700)


def test_the_local_store_removes_only_the_temp_files_of_a_write_cut_short(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path)
    cut_short = [tmp_path / ".job-1.mp4.abcd_123.tmp", tmp_path / ".job-1.mp4.json.k9k9k9k9.tmp"]
    kept = [
        tmp_path / "job-1.mp4",
        tmp_path / ".job-1.mp4.mp4.abcd1234.tmp",
        tmp_path / ".job-12.mp4.abcd1234.tmp",
    ]
    for path in [*cut_short, *kept]:
        path.write_bytes(b"x")

    assert sorted(store.discard_partial("job-1.mp4")) == sorted(cut_short)
    assert [path for path in [*cut_short, *kept] if path.exists()] == kept


def test_the_local_store_leaves_a_temp_file_written_since_a_moment_alone(tmp_path: Path) -> None:
    store = LocalResultStore(tmp_path)
    old, live = tmp_path / ".job-1.mp4.old00001.tmp", tmp_path / ".job-1.mp4.live0001.tmp"
    for path in (old, live):
        path.write_bytes(b"x")
    os.utime(old, (time.time() - 60, time.time() - 60))

    assert store.discard_partial("job-1.mp4", older_than=time.time() - 30) == [old]
    assert live.exists() and not old.exists()
