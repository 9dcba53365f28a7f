"""The buffer worker as a process against a hostile orchestrator (issue 18): a `running` it keeps
refusing and a kill after the job finished, statuses from the last run it keeps refusing, and a
claim answered a byte at a time when SIGTERM comes.
"""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from fastwan_adapters.orchestrator import StatusOutbox
from fastwan_adapters.testing import Endpoint, Fault, OrchestratorDouble

from .harness import (
    HEARTBEAT_INTERVAL_S,
    SMALL_JOB,
    START_TIMEOUT_S,
    WorkerProcess,
    claimed_earlier,
    ended,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow


def job(job_id: str, **fields: Any) -> dict[str, Any]:
    return {**SMALL_JOB, "musetalk_job_id": job_id, **fields}


def test_a_kill_after_the_job_finished_with_running_refused_reports_succeeded_once_at_restart(
    orch: OrchestratorDouble, tmp_path: Path, tiny_dir: Path
) -> None:
    orch.refuse(500, status="running")
    buffer_job_id = orch.add_job(job("finished-then-killed"))
    env = worker_env(orch, tmp_path, tiny_dir)
    outbox = tmp_path / "state" / "status-outbox" / f"{buffer_job_id}.status.json"

    with WorkerProcess(env, tmp_path / "first.log") as first:
        wait_until(orch, lambda o: o.statuses(buffer_job_id, recorded_only=False), first, START_TIMEOUT_S)
        deadline = time.monotonic() + 60
        while not outbox.exists() and time.monotonic() < deadline and first.running:
            time.sleep(0.02)
        assert outbox.exists(), f"the finished job's status is not in the outbox\n{first.log()}"
        # The job's final progress call goes out beside the outbox write (a few ms after it).
        wait_until(orch, lambda o: o.progress("finished-then-killed")[-1]["status"] != "running", first, 5)
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    assert orch.terminal_statuses(buffer_job_id) == []
    assert orch.progress("finished-then-killed")[-1]["status"] == "succeeded"
    orch.clear_refusals()

    claims_before = len(orch.requests(Endpoint.CLAIM))
    with WorkerProcess(env, tmp_path / "second.log") as second:
        # SIGTERM once it claims: a stop during the model's load waits for the load to finish.
        wait_until(
            orch,
            lambda o: ended(buffer_job_id)(o) and len(o.requests(Endpoint.CLAIM)) > claims_before,
            second,
            START_TIMEOUT_S,
            "the status from the outbox, then a claim",
        )
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0

    terminal = [s for s in orch.statuses(buffer_job_id, recorded_only=False) if s["status"] != "running"]
    assert [s["status"] for s in terminal] == ["succeeded"]  # not failed/worker_shutdown, once
    assert not outbox.exists()


def test_sigterm_during_a_dripping_claim_exits_0_within_the_grace_with_a_stopping_heartbeat(
    orch: OrchestratorDouble, tmp_path: Path, tiny_dir: Path
) -> None:
    env = worker_env(orch, tmp_path, tiny_dir, SHUTDOWN_GRACE_S="3")

    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        wait_until(orch, lambda o: o.requests(Endpoint.CLAIM), worker, START_TIMEOUT_S, "a first claim")
        orch.fail_next(Endpoint.CLAIM, Fault.dripped(3.0))  # a byte every 3 s: minutes for an answer
        count = len(orch.requests(Endpoint.CLAIM))
        wait_until(orch, lambda o: len(o.requests(Endpoint.CLAIM)) > count, worker, 10, "the dripping claim")
        time.sleep(0.5)
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.log()
        took = time.monotonic() - signalled

    assert took < 3 + 2.0, worker.log()
    assert orch.heartbeats("vast-test")[-1]["status"] == "stopping"


def test_heartbeats_keep_their_cadence_while_the_orchestrator_refuses_the_last_runs_status(
    orch: OrchestratorDouble, tmp_path: Path, tiny_dir: Path
) -> None:
    refused = orch.add_job(job("left-refused"))
    assert claimed_earlier(orch, "vast-test") is not None
    StatusOutbox(tmp_path / "state").put(refused, {"status": "succeeded", "output_url": "file:///x.mp4"})
    orch.refuse(503, buffer_job_id=refused)
    meanwhile = orch.add_job(job("meanwhile"))

    with WorkerProcess(worker_env(orch, tmp_path, tiny_dir), tmp_path / "worker.log") as worker:
        wait_until(orch, ended(meanwhile), worker, START_TIMEOUT_S, "a job claimed meanwhile")
        time.sleep(1.5)  # idle, the refused status still retried in rounds
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0

    first_try = orch.requests(Endpoint.STATUS)[0]
    assert first_try.ident == refused
    beats = [r.at for r in orch.requests(Endpoint.HEARTBEAT)]
    assert beats[0] - first_try.at < 1.0  # online within a second, the refused status still unsent
    # Once the job is done (the tiny model's load and first job on a busy machine may hold the
    # GIL), the cadence is kept while the refused status is still retried in the background.
    done_at = max(r.at for r in orch.requests(Endpoint.STATUS) if r.ident == meanwhile)
    idle = [at for at in beats if at >= done_at]
    assert len(idle) >= 5
    assert max(b - a for a, b in itertools.pairwise(idle)) < HEARTBEAT_INTERVAL_S + 0.5
    assert [s["status"] for s in orch.statuses(meanwhile)] == ["running", "succeeded"]
    assert len(orch.statuses(refused, recorded_only=False)) >= 2  # still tried, in rounds
    assert orch.terminal_statuses(refused) == []


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM yet (Linux: ``SigCgt`` in its status)."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(line for line in status if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def test_a_sigterm_in_the_first_second_of_the_start_exits_0_with_a_stopping_heartbeat(
    orch: OrchestratorDouble, tmp_path: Path, tiny_dir: Path
) -> None:
    """Issue 23, item 7: a SIGTERM before the handler was installed (the imports, about a
    second) ended the worker with 143. The signal is sent as soon as the process catches it."""
    env = worker_env(orch, tmp_path, tiny_dir, SHUTDOWN_GRACE_S="3")

    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        deadline = time.monotonic() + 10
        while not _catches_sigterm(worker.process.pid):
            assert time.monotonic() < deadline and worker.running, worker.log()
            time.sleep(0.002)
        logged_before = worker.log_path.read_text()
        worker.signal(signal.SIGTERM)
        code = worker.wait(START_TIMEOUT_S)

    assert "starting against" not in logged_before  # the signal came during the start
    assert code == 0, worker.log()
    beats = orch.heartbeats("vast-test")
    assert beats and {beat["status"] for beat in beats} == {"stopping"}, beats
    assert orch.requests(Endpoint.CLAIM) == []
