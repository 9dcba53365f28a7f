"""What the outbox and the claim journal do with entries they did not write: anything a crash, a
person or another program can leave in ``STATE_DIR`` is set aside with a log line naming the file
and why, is never read in a blocking way, and never stops the good entries beside it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fastwan_adapters.orchestrator import (
    ClaimJournal,
    OrchestratorClient,
    PendingStatus,
    RetryPolicy,
    StatusOutbox,
    StatusOutcome,
)
from fastwan_adapters.testing import OrchestratorDouble, RecordingSleep
from tests.adapters.support import Run, opened

BODY = {"status": "succeeded", "output_url": "https://f005.example/file/b/job-1.mp4", "worker_id": "w-1"}
GOOD_CLAIM = {"version": 1, "buffer_job_id": "b-good", "musetalk_job_id": "job-good", "claimed_at": 1.0}
TIMEOUT_S = 10.0


@pytest.fixture
def orch() -> Iterator[OrchestratorDouble]:
    with OrchestratorDouble() as double:
        yield double


@pytest.fixture
def client(orch: OrchestratorDouble, run: Run) -> Iterator[OrchestratorClient]:
    with opened(run, orch.url, orch.api_key, timeout=1.0, retry=RetryPolicy(sleep=RecordingSleep())) as c:
        yield c


def claimed(run: Run, orch: OrchestratorDouble, client: OrchestratorClient) -> str:
    buffer_job_id = orch.add_job({"musetalk_job_id": "job-1", "prompt": "p"})
    run(client.claim("w-1"))
    return buffer_job_id


def record(buffer_job_id: object = "b-bad", **fields: object) -> dict[str, object]:
    return {"version": 1, "buffer_job_id": buffer_job_id, "written_ns": 1, "body": BODY, **fields}


def in_time(call: Callable[[], object], *, unblock: Path | None = None) -> object:
    """``call()``'s value, or a failure if it has not returned in ``TIMEOUT_S`` (a read that
    blocks on a FIFO): the FIFO is then opened for writing, so that the blocked read ends."""
    answer: list[object] = []
    thread = threading.Thread(target=lambda: answer.append(call()), daemon=True)
    thread.start()
    thread.join(TIMEOUT_S)
    if thread.is_alive():
        if unblock is not None:
            os.close(os.open(unblock, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(TIMEOUT_S)
        pytest.fail(f"still reading after {TIMEOUT_S} s: a read that blocks")
    assert answer, "the call raised (see the thread's traceback above)"
    return answer[0]


# -- the outbox -----------------------------------------------------------------------------

_OUTBOX_TEXTS = {
    "NaN in the body": json.dumps(record(body={**BODY, "metrics": {"fps": float("nan")}})),
    "Infinity as written_ns": json.dumps(record(written_ns=float("inf"))),
    "a number too large for a float": json.dumps(record()).replace('"written_ns": 1', '"written_ns": 1e400'),
    "a 100,000-character id": json.dumps(record("x" * 100_000)),
    "an id that is not its name's": json.dumps(record("b-other")),
    "a body that is not an object": json.dumps(record(body=[["status", "succeeded"]])),
    "nested too deep": "[" * 100_000 + "]" * 100_000,
    "larger than a record can be": json.dumps(record(body={**BODY, "pad": "x" * (2 << 20)})),
}


@pytest.mark.parametrize("text", list(_OUTBOX_TEXTS.values()), ids=list(_OUTBOX_TEXTS))
def test_an_outbox_entry_that_put_could_not_have_written_is_set_aside_and_the_others_are_sent(
    tmp_path: Path,
    orch: OrchestratorDouble,
    client: OrchestratorClient,
    caplog: pytest.LogCaptureFixture,
    text: str,
    run: Run,
) -> None:
    outbox = StatusOutbox(tmp_path)
    buffer_job_id = claimed(run, orch, client)
    outbox.put(buffer_job_id, BODY)
    (outbox.directory / "b-bad.status.json").write_text(text)

    with caplog.at_level(logging.ERROR):
        assert run(outbox.flush(client)) == {buffer_job_id: StatusOutcome.RECORDED}

    assert orch.terminal_statuses(buffer_job_id) == [BODY]
    assert (outbox.directory / "b-bad.corrupt").read_text() == text  # kept, for a person to read
    assert "outbox file b-bad.status.json is unreadable" in caplog.text
    assert outbox.pending() == []


def test_a_folder_where_an_outbox_entry_should_be_is_set_aside(
    tmp_path: Path,
    orch: OrchestratorDouble,
    client: OrchestratorClient,
    caplog: pytest.LogCaptureFixture,
    run: Run,
) -> None:
    outbox = StatusOutbox(tmp_path)
    buffer_job_id = claimed(run, orch, client)
    outbox.put(buffer_job_id, BODY)
    (outbox.directory / "b-dir.status.json").mkdir()

    with caplog.at_level(logging.ERROR):
        assert run(outbox.flush(client)) == {buffer_job_id: StatusOutcome.RECORDED}

    assert (outbox.directory / "b-dir.corrupt").is_dir()
    assert "b-dir.status.json is unreadable (it is a folder, not a regular file)" in caplog.text


def test_an_entry_that_cannot_be_set_aside_is_skipped_with_a_log_line_at_every_read(
    tmp_path: Path,
    orch: OrchestratorDouble,
    client: OrchestratorClient,
    caplog: pytest.LogCaptureFixture,
    run: Run,
) -> None:
    outbox = StatusOutbox(tmp_path)
    buffer_job_id = claimed(run, orch, client)
    outbox.put(buffer_job_id, BODY)
    (outbox.directory / "b-dir.status.json").mkdir()
    (outbox.directory / "b-dir.corrupt").mkdir()
    (outbox.directory / "b-dir.corrupt" / "kept").write_text("a folder not empty: no rename onto it")

    with caplog.at_level(logging.ERROR):
        assert run(outbox.flush(client)) == {buffer_job_id: StatusOutcome.RECORDED}
        assert outbox.pending() == []

    assert "could not set outbox file b-dir.status.json aside" in caplog.text
    assert caplog.text.count("b-dir.status.json is unreadable") == 2
    assert (outbox.directory / "b-dir.status.json").is_dir()


def test_a_fifo_where_an_outbox_entry_should_be_is_set_aside_without_waiting_for_a_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = StatusOutbox(tmp_path)
    outbox.put("b-1", BODY)
    fifo = outbox.directory / "b-fifo.status.json"
    os.mkfifo(fifo)

    with caplog.at_level(logging.ERROR):
        pending = in_time(outbox.pending, unblock=fifo)

    assert [p.buffer_job_id for p in pending] == ["b-1"]  # type: ignore[attr-defined]
    assert "b-fifo.status.json is unreadable (it is a FIFO, not a regular file)" in caplog.text
    assert not fifo.exists() and (outbox.directory / "b-fifo.corrupt").exists()


@pytest.mark.parametrize("kind", [StatusOutbox, ClaimJournal])
def test_a_folder_named_like_a_temp_file_is_left_with_a_log_line_and_the_rest_opens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: type[StatusOutbox] | type[ClaimJournal]
) -> None:
    folder = kind(tmp_path).directory / ".tmp-left-by-someone"
    folder.mkdir()

    with caplog.at_level(logging.ERROR):
        reopened = kind(tmp_path)

    assert f"could not remove {folder}" in caplog.text
    assert folder.is_dir() and reopened.directory == folder.parent


def test_a_file_where_the_outbox_folder_should_be_is_moved_aside_and_the_outbox_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "status-outbox").write_bytes(b"\x00not a folder")

    with caplog.at_level(logging.ERROR):
        outbox = StatusOutbox(tmp_path)

    assert "cannot be used (it is not a folder)" in caplog.text
    (aside,) = tmp_path.glob("status-outbox.unreadable-*")
    assert aside.read_bytes() == b"\x00not a folder"
    outbox.put("b-1", BODY)
    assert [p.buffer_job_id for p in outbox.pending()] == ["b-1"]


def test_a_status_whose_request_cannot_be_built_is_a_failure_of_that_entry_not_of_the_flush(
    tmp_path: Path,
    orch: OrchestratorDouble,
    client: OrchestratorClient,
    caplog: pytest.LogCaptureFixture,
    run: Run,
) -> None:
    outbox = StatusOutbox(tmp_path)
    buffer_job_id = claimed(run, orch, client)
    # An id too long for a URL (httpx.InvalidURL), as a caller holding a hand-made entry has it.
    path = outbox.directory / "b-long.status.json"
    path.write_text(json.dumps(record("b-long")))
    unsendable = PendingStatus("x" * 100_000, BODY, 1, path)

    with caplog.at_level(logging.ERROR):
        assert run(outbox.send(client, unsendable)) is StatusOutcome.REJECTED
    assert run(outbox.deliver(client, buffer_job_id, BODY)) is StatusOutcome.RECORDED

    assert "the request cannot be built (InvalidURL" in caplog.text
    assert (outbox.directory / "b-long.rejected.json").exists()
    assert orch.terminal_statuses(buffer_job_id) == [BODY]


@pytest.mark.parametrize(
    ("buffer_job_id", "body", "why"),
    [
        ("x" * 100_000, BODY, "InvalidURL: URL too long"),
        ("b-1", {**BODY, "fps": float("nan")}, "ValueError: Out of range float"),
        ("", BODY, "buffer_job_id must not be empty"),
    ],
    ids=["an id too long for a URL", "a body with NaN", "an empty id"],
)
def test_a_status_request_that_cannot_be_built_is_rejected_at_once_without_a_try(
    orch: OrchestratorDouble,
    caplog: pytest.LogCaptureFixture,
    buffer_job_id: str,
    body: dict,
    why: str,
    run: Run,
) -> None:
    sleep = RecordingSleep()
    with (
        opened(run, orch.url, orch.api_key, timeout=1.0, retry=RetryPolicy(sleep=sleep)) as client,
        caplog.at_level(logging.ERROR),
    ):
        assert run(client.post_status(buffer_job_id, body)) is StatusOutcome.REJECTED

    assert orch.requests() == []
    assert sleep.waits == []  # not retried
    assert why in caplog.text
    assert "x" * 1000 not in caplog.text  # the overlong id is not logged whole


# -- the claim journal ----------------------------------------------------------------------

_JOURNAL_TEXTS = {
    "-Infinity as claimed_at": json.dumps(
        {**GOOD_CLAIM, "buffer_job_id": "b-bad", "claimed_at": float("-inf")}
    ),
    "Infinity as a string": json.dumps({**GOOD_CLAIM, "buffer_job_id": "b-bad", "claimed_at": "Infinity"}),
    "a musetalk_job_id that is a path": json.dumps(
        {**GOOD_CLAIM, "buffer_job_id": "b-bad", "musetalk_job_id": "../../x"}
    ),
    "a musetalk_job_id that is not a string": json.dumps(
        {**GOOD_CLAIM, "buffer_job_id": "b-bad", "musetalk_job_id": ["job"]}
    ),
}


@pytest.mark.parametrize("text", list(_JOURNAL_TEXTS.values()), ids=list(_JOURNAL_TEXTS))
def test_a_journal_entry_with_a_bad_time_or_id_is_set_aside_and_never_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    journal = ClaimJournal(tmp_path)
    (journal.directory / "b-good.claim.json").write_text(json.dumps(GOOD_CLAIM))
    (journal.directory / "b-bad.claim.json").write_text(text)

    with caplog.at_level(logging.ERROR):
        orphans = journal.orphans()

    assert [(e.buffer_job_id, e.musetalk_job_id, e.claimed_at) for e in orphans] == [
        ("b-good", "job-good", 1.0)
    ]
    assert "claim journal file b-bad.claim.json is unreadable" in caplog.text
    assert (journal.directory / "b-bad.claim.json.corrupt").read_text() == text


def test_a_fifo_in_the_journal_is_set_aside_without_waiting_for_a_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = ClaimJournal(tmp_path)
    journal.record("b-good", "job-good")
    fifo = journal.directory / "b-fifo.claim.json"
    os.mkfifo(fifo)

    with caplog.at_level(logging.ERROR):
        orphans = in_time(journal.orphans, unblock=fifo)

    assert [e.buffer_job_id for e in orphans] == ["b-good"]  # type: ignore[attr-defined]
    assert "b-fifo.claim.json is unreadable (it is a FIFO, not a regular file)" in caplog.text
    assert (journal.directory / "b-fifo.claim.json.corrupt").exists()


def test_the_journal_refuses_to_record_a_musetalk_job_id_that_could_not_be_read_back(tmp_path: Path) -> None:
    journal = ClaimJournal(tmp_path)

    with pytest.raises(ValueError, match="musetalk_job_id"):
        journal.record("b-1", "../../x")

    assert journal.orphans() == []


def test_links_to_nothing_and_link_loops_are_set_aside_with_what_is_wrong_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = ClaimJournal(tmp_path)
    outbox = StatusOutbox(tmp_path)
    (journal.directory / "b-link.claim.json").symlink_to(tmp_path / "nowhere" / "x")
    (outbox.directory / "b-loop.status.json").symlink_to(outbox.directory / "b-loop.status.json")

    with caplog.at_level(logging.ERROR):
        assert journal.orphans() == []
        assert outbox.pending() == []

    assert "b-link.claim.json is unreadable (it is a link to nothing)" in caplog.text
    assert f"b-loop.status.json is unreadable ({os.strerror(errno.ELOOP)})" in caplog.text
    assert (journal.directory / "b-link.claim.json.corrupt").is_symlink()
    assert (outbox.directory / "b-loop.corrupt").is_symlink()
