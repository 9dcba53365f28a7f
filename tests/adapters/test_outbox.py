"""The terminal-status outbox: on disk before it is sent, gone once recorded, across crashes.

Crashes are real: a child process writes the outbox and dies (SIGKILL or ``os._exit``) at the
point under test; this process then restarts the outbox on the same folder and flushes it to
the orchestrator double, which must end up with exactly one recorded terminal status.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap

import pytest

from fastwan_adapters.orchestrator import (
    DeliveryInterrupted,
    OrchestratorUnavailable,
    RetryPolicy,
    StatusOutbox,
    StatusOutcome,
)
from fastwan_adapters.testing import Endpoint, Fault, OrchestratorDouble, RecordingSleep
from tests.adapters.support import opened

BODY = {"status": "succeeded", "output_url": "https://f005.example/file/b/job-1.mp4", "worker_id": "w-1"}


@pytest.fixture
def orch():
    with OrchestratorDouble() as double:
        yield double


@pytest.fixture
def client(orch, run):
    with opened(run, orch.url, orch.api_key, timeout=1.0, retry=RetryPolicy(sleep=RecordingSleep())) as c:
        yield c


@pytest.fixture
def outbox(tmp_path):
    return StatusOutbox(tmp_path)


def claim(run, orch, client, count=1) -> list[str]:
    ids = [orch.add_job({"musetalk_job_id": f"job-{n}", "prompt": "p"}) for n in range(count)]
    for _ in ids:
        run(client.claim("w-1"))
    return ids


def run_child(code: str, *args: str) -> int:
    """Run ``code`` in a fresh interpreter (argv[1:] = args); return its exit status."""
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, timeout=60, check=False
    )
    assert b"Traceback" not in completed.stderr, completed.stderr.decode()
    return completed.returncode


# -- on disk --------------------------------------------------------------------------------


def test_put_writes_a_durable_json_entry_that_pending_reads_back(outbox):
    entry = outbox.put("b-1", BODY)

    assert entry.path.parent == outbox.directory
    stored = json.loads(entry.path.read_text())
    assert stored["buffer_job_id"] == "b-1"
    assert stored["body"] == BODY
    assert [(p.buffer_job_id, p.body) for p in outbox.pending()] == [("b-1", BODY)]
    assert [p.name for p in outbox.directory.iterdir()] == [entry.path.name]  # no temp file left


def test_pending_is_oldest_first_and_a_second_put_replaces_the_first(outbox):
    outbox.put("b-2", {"status": "failed"})
    outbox.put("b-1", {"status": "failed"})
    outbox.put("b-2", BODY)

    assert [(p.buffer_job_id, p.body["status"]) for p in outbox.pending()] == [
        ("b-1", "failed"),
        ("b-2", "succeeded"),
    ]


@pytest.mark.parametrize("bad_id", ["", "../escape", ".hidden", "a/b", "x" * 129])
def test_put_refuses_ids_that_are_not_contract_ids(outbox, bad_id):
    with pytest.raises(ValueError, match="buffer_job_id"):
        outbox.put(bad_id, BODY)
    assert outbox.pending() == []


def test_put_refuses_a_body_that_is_not_json(outbox):
    with pytest.raises(ValueError, match="b-1 is not JSON"):
        outbox.put("b-1", {"metrics": {"fps": float("nan")}})
    assert outbox.pending() == []


def test_an_unreadable_entry_is_set_aside_and_does_not_block_the_others(outbox, orch, client, run):
    (buffer_job_id,) = claim(run, orch, client)
    outbox.put(buffer_job_id, BODY)
    (outbox.directory / "b-broken.status.json").write_text("{half a record")

    assert run(outbox.flush(client)) == {buffer_job_id: StatusOutcome.RECORDED}
    assert (outbox.directory / "b-broken.corrupt").exists()
    assert outbox.pending() == []


# -- delivery -------------------------------------------------------------------------------


def test_deliver_records_the_status_and_removes_the_entry(outbox, orch, client, run):
    (buffer_job_id,) = claim(run, orch, client)

    assert run(outbox.deliver(client, buffer_job_id, BODY)) is StatusOutcome.RECORDED

    assert orch.terminal_statuses(buffer_job_id) == [BODY]
    assert outbox.pending() == []
    assert list(outbox.directory.iterdir()) == []


@pytest.mark.parametrize("code", [404, 409])
def test_a_job_taken_away_is_gone_and_its_entry_removed(outbox, orch, client, code, run):
    (buffer_job_id,) = claim(run, orch, client)
    orch.take_away(buffer_job_id, status=code)

    assert run(outbox.deliver(client, buffer_job_id, BODY)) is StatusOutcome.GONE

    assert orch.terminal_statuses(buffer_job_id) == []
    assert outbox.pending() == []


def test_a_refused_status_is_kept_aside_on_disk_not_resent(outbox, orch, client, run):
    (buffer_job_id,) = claim(run, orch, client)
    orch.fail_next(Endpoint.STATUS, Fault.answer(422))

    assert run(outbox.deliver(client, buffer_job_id, BODY)) is StatusOutcome.REJECTED

    assert outbox.pending() == []
    kept = json.loads((outbox.directory / f"{buffer_job_id}.rejected.json").read_text())
    assert kept["body"] == BODY
    assert run(outbox.flush(client)) == {}
    assert len(orch.statuses(buffer_job_id, recorded_only=False)) == 1


def test_an_outage_keeps_the_entry_until_a_later_flush_delivers_it_once(tmp_path, orch, run):
    stop = asyncio.Event()
    outbox = StatusOutbox(tmp_path)
    with opened(
        run, orch.url, orch.api_key, retry=RetryPolicy(sleep=RecordingSleep(stop=stop, stop_after=4))
    ) as c:
        (buffer_job_id,) = claim(run, orch, c)
        orch.fail_next(Endpoint.STATUS, Fault.answer(503), times=50)
        with pytest.raises(DeliveryInterrupted):
            run(outbox.deliver(c, buffer_job_id, BODY, stop=stop))
    assert [p.buffer_job_id for p in outbox.pending()] == [buffer_job_id]
    assert orch.terminal_statuses(buffer_job_id) == []

    orch.clear_faults()  # the orchestrator is back
    with opened(run, orch.url, orch.api_key, retry=RetryPolicy(sleep=RecordingSleep())) as c:
        assert run(StatusOutbox(tmp_path).flush(c)) == {buffer_job_id: StatusOutcome.RECORDED}

    assert orch.terminal_statuses(buffer_job_id) == [BODY]
    assert StatusOutbox(tmp_path).pending() == []


def test_send_with_max_attempts_raises_and_keeps_the_entry_and_discard_removes_it_unsent(
    outbox, orch, client, run
):
    (buffer_job_id,) = claim(run, orch, client)
    entry = outbox.put(buffer_job_id, {"status": "succeeded"})
    orch.fail_next(Endpoint.STATUS, Fault.answer(503), times=5)

    with pytest.raises(OrchestratorUnavailable):
        run(outbox.send(client, entry, max_attempts=2))
    assert [e.buffer_job_id for e in outbox.pending()] == [buffer_job_id]
    assert len(orch.statuses(buffer_job_id, recorded_only=False)) == 2

    outbox.discard(entry)
    assert outbox.pending() == [] and not outbox.holds(buffer_job_id)
    assert len(orch.statuses(buffer_job_id, recorded_only=False)) == 2


def test_flush_sends_oldest_first(outbox, orch, client, run):
    first, second, third = claim(run, orch, client, 3)
    for buffer_job_id in (second, third, first):
        outbox.put(buffer_job_id, BODY)

    outcomes = run(outbox.flush(client))

    assert list(outcomes) == [second, third, first]
    assert [r.ident for r in orch.requests(Endpoint.STATUS)] == [second, third, first]


# -- crashes, in a real child process ---------------------------------------------------------

_PUT_THEN_SIGKILL = """
    import os, signal, sys
    from fastwan_adapters.orchestrator import StatusOutbox
    StatusOutbox(sys.argv[1]).put(sys.argv[2], {"status": "succeeded", "worker_id": "w-1"})
    os.kill(os.getpid(), signal.SIGKILL)
"""

_SENT_THEN_CRASH_BEFORE_REMOVAL = """
    import os, sys
    from fastwan_adapters.orchestrator import OrchestratorClient, StatusOutbox, outbox
    outbox._remove_durably = lambda path: os._exit(9)  # the crash: right after the 2xx
    import asyncio
    state_dir, buffer_job_id, url, key = sys.argv[1:]

    async def deliver():
        async with OrchestratorClient(url, key) as client:
            body = {"status": "failed", "worker_id": "w-1"}
            await StatusOutbox(state_dir).deliver(client, buffer_job_id, body)

    asyncio.run(deliver())
    os._exit(0)
"""

_CRASH_INSIDE_PUT = """
    import os, sys, pathlib
    from fastwan_adapters.orchestrator import StatusOutbox
    pathlib.Path.replace = lambda self, target: os._exit(9)  # the crash: data written, not yet renamed
    StatusOutbox(sys.argv[1]).put(sys.argv[2], {"status": "failed"})
"""


def test_killed_after_put_the_restarted_outbox_sends_the_status_exactly_once(tmp_path, orch, client, run):
    (buffer_job_id,) = claim(run, orch, client)

    assert run_child(_PUT_THEN_SIGKILL, str(tmp_path), buffer_job_id) == -signal.SIGKILL
    assert orch.statuses(buffer_job_id, recorded_only=False) == []

    restarted = StatusOutbox(tmp_path)
    assert run(restarted.flush(client)) == {buffer_job_id: StatusOutcome.RECORDED}
    assert run(restarted.flush(client)) == {}
    assert orch.terminal_statuses(buffer_job_id) == [{"status": "succeeded", "worker_id": "w-1"}]
    assert restarted.pending() == []


def test_crash_between_the_2xx_and_the_removal_is_resent_once_and_recorded_once(tmp_path, orch, client, run):
    (buffer_job_id,) = claim(run, orch, client)

    assert (
        run_child(_SENT_THEN_CRASH_BEFORE_REMOVAL, str(tmp_path), buffer_job_id, orch.url, orch.api_key) == 9
    )
    assert len(orch.terminal_statuses(buffer_job_id)) == 1

    restarted = StatusOutbox(tmp_path)
    assert [p.buffer_job_id for p in restarted.pending()] == [buffer_job_id]
    assert run(restarted.flush(client)) == {
        buffer_job_id: StatusOutcome.GONE
    }  # the double's 409: already ended
    assert orch.terminal_statuses(buffer_job_id) == [{"status": "failed", "worker_id": "w-1"}]
    assert restarted.pending() == []


def test_crash_inside_put_leaves_no_entry_and_the_restart_cleans_the_temp_file(tmp_path):
    assert run_child(_CRASH_INSIDE_PUT, str(tmp_path), "b-1") == 9
    folder = tmp_path / "status-outbox"
    assert [p.name.startswith(".tmp-") for p in folder.iterdir()] == [True]

    restarted = StatusOutbox(tmp_path)
    assert restarted.pending() == []
    assert list(folder.iterdir()) == []
