"""``STATE_DIR`` at the buffer worker's start, through the real process: one bad file there is
set aside and the worker starts (heartbeats, sends what else was left, stops on SIGTERM); a
``STATE_DIR`` that cannot be used at all is a configuration error naming it (exit 2), not a
traceback and a restart loop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.orchestrator import StatusOutbox
from fastwan_adapters.testing import OrchestratorDouble

from .harness import START_TIMEOUT_S, WorkerProcess, claimed_earlier, ready, wait_until, worker_env

pytestmark = pytest.mark.slow

BODY = {
    "status": "failed",
    "error": "left from the last run",
    "error_code": "internal",
    "worker_id": "vast-test",
}
CLAIM = {"version": 1, "buffer_job_id": "b-bad", "musetalk_job_id": "job-bad", "claimed_at": 1.0}
STATUS = {"version": 1, "buffer_job_id": "b-bad", "written_ns": 1, "body": BODY}


def _write(relative: str, value: object) -> Callable[[Path], Path]:
    def make(state: Path) -> Path:
        path = state / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value if isinstance(value, str) else json.dumps(value))
        return path

    return make


def _mkdir(relative: str) -> Callable[[Path], Path]:
    def make(state: Path) -> Path:
        (state / relative).mkdir(parents=True)
        return state / relative

    return make


def _mkfifo(relative: str) -> Callable[[Path], Path]:
    def make(state: Path) -> Path:
        (state / relative).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(state / relative)
        return state / relative

    return make


# What is made in STATE_DIR, and the name it must be set aside as.
BAD_FILES = {
    "outbox NaN": (
        _write("status-outbox/b-bad.status.json", {**STATUS, "body": {**BODY, "fps": float("nan")}}),
        "status-outbox/b-bad.corrupt",
    ),
    "outbox Infinity": (
        _write("status-outbox/b-bad.status.json", {**STATUS, "written_ns": float("inf")}),
        "status-outbox/b-bad.corrupt",
    ),
    "outbox folder": (_mkdir("status-outbox/b-bad.status.json"), "status-outbox/b-bad.corrupt"),
    "outbox FIFO": (_mkfifo("status-outbox/b-bad.status.json"), "status-outbox/b-bad.corrupt"),
    "outbox 100,000-character id": (
        _write("status-outbox/b-bad.status.json", {**STATUS, "buffer_job_id": "x" * 100_000}),
        "status-outbox/b-bad.corrupt",
    ),
    "journal -Infinity": (
        _write("claim-journal/b-bad.claim.json", {**CLAIM, "claimed_at": float("-inf")}),
        "claim-journal/b-bad.claim.json.corrupt",
    ),
    "journal ../../x": (
        _write("claim-journal/b-bad.claim.json", {**CLAIM, "musetalk_job_id": "../../x"}),
        "claim-journal/b-bad.claim.json.corrupt",
    ),
    "journal FIFO": (_mkfifo("claim-journal/b-bad.claim.json"), "claim-journal/b-bad.claim.json.corrupt"),
    "a file for status-outbox/": (_write("status-outbox", "not a folder"), "status-outbox.unreadable-*"),
}


@pytest.mark.parametrize("make, aside", list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_one_bad_file_in_state_dir_is_set_aside_and_the_worker_starts_sends_the_rest_and_stops(
    orch: OrchestratorDouble,
    tmp_path: Path,
    tiny_dir: Path,
    make: Callable[[Path], Path],
    aside: str,
) -> None:
    state = tmp_path / "state"
    left = orch.add_job({"musetalk_job_id": "job-left", "prompt": "p"})
    claimed_earlier(orch, "vast-test")
    bad = make(state)
    outbox_is_bad = bad.name == "status-outbox"  # the outbox's own folder: nothing can be left in it
    if not outbox_is_bad:
        StatusOutbox(state).put(left, BODY)
    env = worker_env(orch, tmp_path, tiny_dir)

    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        wait_until(
            orch,
            lambda o: o.heartbeats() and ready(o) and (outbox_is_bad or o.terminal_statuses(left)),
            worker,
            START_TIMEOUT_S,
            "a heartbeat, a claim and the status left in the outbox",
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()
        log = worker.log()

    assert list(state.glob(aside)), log
    assert f"{bad.name} is unreadable" in log or "cannot be used (it is not a folder)" in log
    assert orch.statuses("b-bad", recorded_only=False) == []
    assert "Traceback" not in log


# -- a STATE_DIR that cannot be used ----------------------------------------------------------


def _read_only(tmp_path: Path) -> tuple[list[str], Path]:
    """The command to start the worker with ``tmp_path/state`` read-only, and that folder. Root
    writes through permission bits, so for root it is a read-only bind mount in a mount namespace
    of the worker's own; for anyone else, a folder without write permission."""
    state = tmp_path / "state"
    state.mkdir()
    command = [sys.executable, "-m", "buffer_worker"]
    if os.geteuid() != 0:
        state.chmod(0o555)
        return command, state
    mount_read_only = [
        "unshare",
        "-m",
        "sh",
        "-c",
        'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"',
    ]
    probe = [
        *mount_read_only,
        str(state),
        "sh",
        "-c",
        'touch "$0"/probe 2>/dev/null && exit 1 || exit 0',
        str(state),
    ]
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True, check=False).returncode:
        pytest.skip("root without a private mount namespace: no read-only folder to test with")
    return [*mount_read_only, str(state), *command], state


def _a_file(tmp_path: Path) -> tuple[list[str], Path]:
    (tmp_path / "state").write_text("not a folder")
    return [sys.executable, "-m", "buffer_worker"], tmp_path / "state"


def _under_a_file(tmp_path: Path) -> tuple[list[str], Path]:
    (tmp_path / "a-file").write_text("not a folder")
    return [sys.executable, "-m", "buffer_worker"], tmp_path / "a-file" / "state"


@pytest.mark.parametrize(
    "unusable", [_read_only, _a_file, _under_a_file], ids=["read-only", "a file", "under a file"]
)
def test_an_unusable_state_dir_is_a_configuration_error_naming_it(
    orch: OrchestratorDouble,
    tmp_path: Path,
    tiny_dir: Path,
    unusable: Callable[[Path], tuple[list[str], Path]],
) -> None:
    command, state = unusable(tmp_path)
    env = worker_env(orch, tmp_path, tiny_dir, STATE_DIR=str(state))

    run = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False
    )

    output = run.stdout + run.stderr
    assert run.returncode == ExitCode.CONFIG, output
    assert f"cannot start: STATE_DIR {str(state)!r} is not usable" in output
    assert "Traceback" not in output
    assert orch.heartbeats() == []
