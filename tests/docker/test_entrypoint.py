"""The container entrypoint, run for real against stub programs on PATH.

Each stub (``fastwan-queue-worker``, ``salad-http-job-queue-worker``, ``fastwan-buffer-worker``)
is a small bash script that records its arguments, environment, pid and the signals it gets
into files, and exits when the test writes an exit code for it (or, on SIGTERM, with the code
written for that). PATH holds only the stubs and the few tools the scripts use, so a real
``nvidia-smi`` or Salad binary on the machine cannot leak in. Waits poll with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.queue_worker.support import free_port, png_server

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "run_fastwan_worker.sh"
DEADLINE_S = 5.0
APP = "fastwan-queue-worker"
SALAD = "salad-http-job-queue-worker"
BUFFER = "fastwan-buffer-worker"
SUPERVISOR = "fastwan-buffer-supervisor"

# The pid file is written last, after the traps are set, so a test that has seen it may signal.
STUB = r"""#!/usr/bin/env bash
rec="${STUB_RECORD_DIR}/@NAME@"
: > "$rec.args"
for arg in "$@"; do printf '%s\n' "$arg" >> "$rec.args"; done
env > "$rec.env"
on_term() {
  echo TERM >> "$rec.signals"
  [[ -f "$rec.ignore_term" ]] && return
  exit "$(cat "$rec.term_exit" 2>/dev/null || echo 0)"
}
trap on_term TERM
trap 'echo INT >> "$rec.signals"' INT
echo $$ > "$rec.pid.tmp" && mv "$rec.pid.tmp" "$rec.pid"
while :; do
  [[ -f "$rec.exit" ]] && exit "$(cat "$rec.exit")"
  sleep 0.02
done
"""

NVIDIA_SMI_STUB = r"""#!/usr/bin/env bash
echo "$*" >> "${STUB_RECORD_DIR}/nvidia-smi.calls"
echo "NVIDIA GeForce RTX 4090, 24564 MiB, 570.86.10"
exit "${NVIDIA_SMI_STUB_EXIT:-0}"
"""

TOOLS = ("bash", "env", "cat", "sleep", "mv", "timeout")


class Sandbox:
    """A PATH of stubs and tools, a folder of records, and the entrypoint run inside them."""

    def __init__(self, root: Path) -> None:
        self.bin_dir = root / "bin"
        self.tools_dir = root / "tools"
        self.record_dir = root / "records"
        for folder in (self.bin_dir, self.tools_dir, self.record_dir):
            folder.mkdir()
        for tool in TOOLS:
            found = shutil.which(tool)
            assert found, f"{tool} is needed to run the entrypoint tests"
            (self.tools_dir / tool).symlink_to(found)
        self.processes: list[subprocess.Popen[str]] = []

    def stub(self, *names: str) -> None:
        for name in names:
            text = NVIDIA_SMI_STUB if name == "nvidia-smi" else STUB.replace("@NAME@", name)
            path = self.bin_dir / name
            path.write_text(text)
            path.chmod(0o755)

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        full_env = {
            "PATH": f"{self.bin_dir}:{self.tools_dir}",
            "STUB_RECORD_DIR": str(self.record_dir),
            **env,
        }
        process = subprocess.Popen(
            [str(SCRIPT), *args], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.processes.append(process)
        return process

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        process = self.start(*args, **env)
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def record(self, name: str, kind: str) -> Path:
        return self.record_dir / f"{name}.{kind}"

    def wait_started(self, name: str) -> int:
        pid_file = self.record(name, "pid")
        deadline = time.monotonic() + DEADLINE_S
        while not pid_file.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not start within {DEADLINE_S}s")
            time.sleep(0.01)
        return int(pid_file.read_text())

    def wait_for_signal(self, name: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not self.signals(name):
            if time.monotonic() > deadline:
                pytest.fail(f"{name} got no signal within {DEADLINE_S}s")
            time.sleep(0.01)

    def started(self, name: str) -> bool:
        return self.record(name, "args").exists()

    def args(self, name: str) -> list[str]:
        return self.record(name, "args").read_text().splitlines()

    def env_of(self, name: str) -> dict[str, str]:
        lines = self.record(name, "env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def signals(self, name: str) -> list[str]:
        path = self.record(name, "signals")
        return path.read_text().split() if path.exists() else []

    def set_exit(self, name: str, code: int) -> None:
        self.record(name, "exit").write_text(str(code))

    def on_term(self, name: str, *, exit_code: int | None = None, ignore: bool = False) -> None:
        if ignore:
            self.record(name, "ignore_term").touch()
        if exit_code is not None:
            self.record(name, "term_exit").write_text(str(exit_code))

    def close(self) -> None:
        # Stubs first: they hold the script's output pipes open.
        for pid_file in self.record_dir.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=DEADLINE_S)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path)
    yield box
    box.close()


def finished(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=DEADLINE_S)
    return process.returncode, stderr


def is_running(pid: int) -> bool:
    """False once ``pid`` has exited, reaped or not (a zombie is not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while is_running(pid):
        if time.monotonic() > deadline:
            pytest.fail(f"pid {pid} still running after {DEADLINE_S}s")
        time.sleep(0.01)


# --- queue mode ---------------------------------------------------------------------------------


def test_queue_is_the_default_mode_and_runs_both_programs(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD)
    process = sandbox.start("--log-level", "debug", ORCHESTRATOR_BASE_URL="https://orchestrator.test")

    sandbox.wait_started(APP)
    sandbox.wait_started(SALAD)
    assert process.poll() is None
    assert sandbox.args(APP) == ["--log-level", "debug"]
    assert sandbox.args(SALAD) == []
    assert sandbox.env_of(APP)["ORCHESTRATOR_BASE_URL"] == "https://orchestrator.test"
    assert sandbox.env_of(SALAD)["ORCHESTRATOR_BASE_URL"] == "https://orchestrator.test"

    sandbox.set_exit(APP, 0)
    assert finished(process)[0] == 0


@pytest.mark.parametrize(("first", "other", "code"), [(APP, SALAD, 5), (SALAD, APP, 3)])
def test_either_program_exiting_stops_the_other_and_sets_the_exit_status(
    sandbox: Sandbox, first: str, other: str, code: int
) -> None:
    sandbox.stub(APP, SALAD)
    process = sandbox.start(WORKER_MODE="queue")
    sandbox.wait_started(APP)
    other_pid = sandbox.wait_started(SALAD if other == SALAD else APP)

    sandbox.set_exit(first, code)

    status, stderr = finished(process)
    assert status == code
    assert sandbox.signals(other) == ["TERM"]
    assert sandbox.signals(first) == []
    assert not is_running(other_pid)
    assert f"{first} exited with status {code}" in stderr


def test_sigterm_stops_the_app_first_and_salads_binary_only_once_the_app_has_exited(
    sandbox: Sandbox,
) -> None:
    sandbox.stub(APP, SALAD)
    sandbox.on_term(APP, ignore=True)  # the app finishes its job in hand before exiting
    sandbox.on_term(SALAD, exit_code=0)
    process = sandbox.start(SALAD_HANDOFF_S="0")
    sandbox.wait_started(APP)
    salad_pid = sandbox.wait_started(SALAD)

    process.send_signal(signal.SIGTERM)
    sandbox.wait_for_signal(APP)
    time.sleep(0.3)  # room for a wrong SIGTERM to the binary, or an early exit, to show
    assert process.poll() is None, "the script must wait for the app to finish its job"
    assert sandbox.signals(SALAD) == [] and is_running(salad_pid), "the binary must outlive the answer"

    sandbox.set_exit(APP, 0)
    status, _ = finished(process)
    assert status == 0
    # A second SIGTERM would make uvicorn abandon its graceful shutdown.
    assert sandbox.signals(APP) == ["TERM"]
    assert sandbox.signals(SALAD) == ["TERM"]


def test_a_second_sigterm_stops_salads_binary_at_once(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD)
    sandbox.on_term(APP, ignore=True)
    sandbox.on_term(SALAD, exit_code=0)
    process = sandbox.start()
    sandbox.wait_started(APP)
    salad_pid = sandbox.wait_started(SALAD)

    process.send_signal(signal.SIGTERM)
    sandbox.wait_for_signal(APP)
    process.send_signal(signal.SIGTERM)
    wait_gone(salad_pid)
    sandbox.set_exit(APP, 0)

    assert finished(process)[0] == 0
    assert sandbox.signals(SALAD) == ["TERM"]


def test_the_binary_gets_the_handoff_time_after_the_app_exits(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD)
    sandbox.on_term(APP, exit_code=0)
    sandbox.on_term(SALAD, exit_code=0)
    process = sandbox.start(SALAD_HANDOFF_S="1")
    sandbox.wait_started(APP)
    sandbox.wait_started(SALAD)

    process.send_signal(signal.SIGTERM)
    sandbox.wait_for_signal(APP)
    time.sleep(0.5)
    handed_off = sandbox.signals(SALAD) == []

    status, stderr = finished(process)
    assert status == 0 and handed_off
    assert sandbox.signals(SALAD) == ["TERM"]
    assert f"{SALAD} has 1s to report its last answer" in stderr


def test_sighup_drains_as_sigterm_does(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD)
    sandbox.on_term(APP, exit_code=0)
    sandbox.on_term(SALAD, exit_code=0)
    process = sandbox.start(SALAD_HANDOFF_S="0")
    app_pid = sandbox.wait_started(APP)
    salad_pid = sandbox.wait_started(SALAD)

    process.send_signal(signal.SIGHUP)

    status, _ = finished(process)
    assert status == 0
    assert sandbox.signals(APP) == ["TERM"] and sandbox.signals(SALAD) == ["TERM"]
    assert not is_running(app_pid) and not is_running(salad_pid)


def test_sigint_is_forwarded_as_sigterm(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD)
    sandbox.on_term(APP, exit_code=0)
    sandbox.on_term(SALAD, exit_code=0)
    process = sandbox.start(SALAD_HANDOFF_S="0")
    sandbox.wait_started(APP)
    sandbox.wait_started(SALAD)

    process.send_signal(signal.SIGINT)

    status, _ = finished(process)
    assert status == 0
    assert sandbox.signals(APP) == ["TERM"]
    assert sandbox.signals(SALAD) == ["TERM"]


def test_a_program_ignoring_sigterm_is_killed_after_the_stop_timeout(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD)
    sandbox.on_term(SALAD, ignore=True)
    process = sandbox.start(STOP_TIMEOUT_S="1")
    sandbox.wait_started(APP)
    salad_pid = sandbox.wait_started(SALAD)

    sandbox.set_exit(APP, 4)

    status, stderr = finished(process)
    assert status == 4
    assert sandbox.signals(SALAD) == ["TERM"]
    assert not is_running(salad_pid)
    assert "sending SIGKILL" in stderr


def test_a_missing_salad_binary_is_a_clear_error_and_starts_nothing(sandbox: Sandbox) -> None:
    sandbox.stub(APP)

    result = sandbox.run()

    assert result.returncode == 127
    assert SALAD in result.stderr
    assert "SALAD_QUEUE_WORKER=off" in result.stderr
    assert not sandbox.started(APP)


def test_a_missing_salad_binary_names_the_build_argument_that_leaves_it_out(sandbox: Sandbox) -> None:
    """An image built with SALAD_QUEUE_WORKER_VERSION=none (the CPU twin) has no binary, on purpose."""
    sandbox.stub(APP)

    result = sandbox.run()

    assert result.returncode == 127
    assert "SALAD_QUEUE_WORKER_VERSION=none" in result.stderr


def test_the_local_switch_runs_the_queue_worker_alone(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD)
    process = sandbox.start("--reload", SALAD_QUEUE_WORKER="off")

    app_pid = sandbox.wait_started(APP)
    assert app_pid == process.pid  # exec'd: signals reach it directly
    assert sandbox.args(APP) == ["--reload"]

    sandbox.set_exit(APP, 6)
    assert finished(process)[0] == 6
    assert not sandbox.started(SALAD)


def test_a_bad_local_switch_value_is_refused(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD)

    result = sandbox.run(SALAD_QUEUE_WORKER="maybe")

    assert result.returncode == 2
    assert "SALAD_QUEUE_WORKER must be 'on' or 'off', got 'maybe'" in result.stderr
    assert not sandbox.started(APP)
    assert not sandbox.started(SALAD)


@pytest.mark.parametrize(
    ("env", "timeout_s"),
    [
        ({}, 35),
        ({"SHUTDOWN_GRACE_S": "2.5"}, 13),
        ({"SHUTDOWN_GRACE_S": "08"}, 18),
        ({"STOP_TIMEOUT_S": "07"}, 7),
    ],
)
def test_the_stop_timeout_follows_the_shutdown_grace(
    sandbox: Sandbox, env: dict[str, str], timeout_s: int
) -> None:
    sandbox.stub(APP, SALAD)
    process = sandbox.start(**env)
    sandbox.wait_started(APP)
    sandbox.wait_started(SALAD)
    sandbox.set_exit(APP, 0)

    status, stderr = finished(process)

    assert status == 0
    assert f"stop timeout {timeout_s}s" in stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STOP_TIMEOUT_S", "soon"),
        ("STOP_TIMEOUT_S", "1.5"),
        ("SHUTDOWN_GRACE_S", "-1"),
        ("SALAD_HANDOFF_S", "0.5"),
    ],
)
def test_a_bad_timeout_is_refused_before_anything_starts(sandbox: Sandbox, name: str, value: str) -> None:
    sandbox.stub(APP, SALAD)

    result = sandbox.run(**{name: value})

    assert result.returncode == 2
    assert f"{name} must be" in result.stderr
    assert f"'{value}'" in result.stderr
    assert not sandbox.started(APP)


# --- buffer mode --------------------------------------------------------------------------------


def test_buffer_mode_execs_the_supervisor_with_the_stop_timeout(sandbox: Sandbox) -> None:
    # The supervisor itself runs for real in test_supervisor.py.
    sandbox.stub(SUPERVISOR, BUFFER, APP, SALAD)
    process = sandbox.start("--once", WORKER_MODE="buffer", BUFFER_WORKER_ID="vast-1", SHUTDOWN_GRACE_S="5")

    supervisor_pid = sandbox.wait_started(SUPERVISOR)
    assert supervisor_pid == process.pid  # exec'd: SIGTERM goes straight to the supervisor
    assert sandbox.args(SUPERVISOR) == ["--once"]
    env = sandbox.env_of(SUPERVISOR)
    assert (env["BUFFER_WORKER_ID"], env["STOP_TIMEOUT_S"]) == ("vast-1", "15")

    sandbox.set_exit(SUPERVISOR, 7)
    assert finished(process)[0] == 7
    assert not any(sandbox.started(name) for name in (BUFFER, APP, SALAD))


def test_buffer_mode_refuses_a_bad_stop_timeout_before_starting(sandbox: Sandbox) -> None:
    sandbox.stub(SUPERVISOR, BUFFER)

    result = sandbox.run(WORKER_MODE="buffer", STOP_TIMEOUT_S="soon")

    assert result.returncode == 2
    assert "STOP_TIMEOUT_S must be" in result.stderr
    assert not sandbox.started(SUPERVISOR)


def test_a_missing_buffer_worker_is_a_clear_error(sandbox: Sandbox) -> None:
    result = sandbox.run(WORKER_MODE="buffer")

    assert result.returncode == 127
    assert f"{BUFFER} not found on PATH" in result.stderr


# --- mode and diagnostics -----------------------------------------------------------------------


def test_an_unknown_mode_fails_listing_the_valid_ones(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD, BUFFER, "nvidia-smi")

    result = sandbox.run(WORKER_MODE="batch")

    assert result.returncode == 2
    assert "WORKER_MODE must be one of: queue, buffer" in result.stderr
    assert "'batch'" in result.stderr
    assert not any(sandbox.started(name) for name in (APP, SALAD, BUFFER))
    assert not sandbox.record("nvidia-smi", "calls").exists()


def test_gpu_diagnostics_are_printed_once(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD, "nvidia-smi")
    process = sandbox.start()
    sandbox.wait_started(APP)
    sandbox.wait_started(SALAD)
    sandbox.set_exit(SALAD, 0)

    stdout, _ = process.communicate(timeout=DEADLINE_S)

    assert stdout.count("NVIDIA GeForce RTX 4090, 24564 MiB, 570.86.10") == 1
    assert len(sandbox.record("nvidia-smi", "calls").read_text().splitlines()) == 1


@pytest.mark.slow
def test_a_hanging_nvidia_smi_delays_the_start_by_its_timeout_only(sandbox: Sandbox) -> None:
    sandbox.stub(APP, SALAD)
    (sandbox.bin_dir / "nvidia-smi").write_text("#!/usr/bin/env bash\nexec sleep 600\n")
    (sandbox.bin_dir / "nvidia-smi").chmod(0o755)
    started = time.monotonic()
    process = sandbox.start()

    deadline = time.monotonic() + 20
    while not sandbox.started(APP) and time.monotonic() < deadline:
        time.sleep(0.05)
    took_s = time.monotonic() - started
    sandbox.set_exit(APP, 0)
    status, stderr = finished(process)

    assert sandbox.started(APP), f"the app had not started {took_s:.0f} s in"
    assert status == 0
    assert "nvidia-smi did not answer within 10s; starting anyway" in stderr


@pytest.mark.parametrize(
    ("with_nvidia_smi", "message"),
    [(False, "nvidia-smi not found"), (True, "nvidia-smi failed with status 9")],
)
def test_a_missing_or_failing_nvidia_smi_does_not_stop_the_worker(
    sandbox: Sandbox, with_nvidia_smi: bool, message: str
) -> None:
    sandbox.stub(SUPERVISOR, BUFFER)
    if with_nvidia_smi:
        sandbox.stub("nvidia-smi")
    process = sandbox.start(WORKER_MODE="buffer", NVIDIA_SMI_STUB_EXIT="9")
    sandbox.wait_started(SUPERVISOR)
    sandbox.set_exit(SUPERVISOR, 0)

    status, stderr = finished(process)

    assert status == 0
    assert message in stderr


# --- queue mode, drained for real: the real app, a stand-in for Salad's binary --------------------

STAND_IN = Path(__file__).resolve().parent / "salad_stand_in.py"


@pytest.fixture
def held_image() -> Iterator[tuple[str, threading.Event, threading.Event]]:
    """A PNG sent only once ``release`` is set; ``asked``: it was asked for (a job is in hand)."""
    release = threading.Event()
    with png_server(release) as (url, asked):
        yield url, asked, release


def events(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_during_a_job_lets_the_app_answer_it_and_salads_binary_report_it(
    sandbox: Sandbox, tiny_dir: Path, tmp_path: Path, held_image: tuple[str, threading.Event, threading.Event]
) -> None:
    image_url, asked, release = held_image
    port = free_port()
    record, jobs = tmp_path / "stand_in.jsonl", tmp_path / "jobs.json"
    job = {"musetalk_job_id": "drain-1", "prompt": "a boat", "width": 256, "height": 320, "num_frames": 5}
    jobs.write_text(json.dumps([{**job, "image_url": image_url}]))
    for name, target in ((APP, f"{sys.executable} -m queue_worker"), (SALAD, f"{sys.executable} {STAND_IN}")):
        (sandbox.bin_dir / name).write_text(f'#!/usr/bin/env bash\nexec {target} "$@"\n')
        (sandbox.bin_dir / name).chmod(0o755)
    process = sandbox.start(
        PORT=str(port),
        HOME=str(tmp_path),
        OUTPUT_DIR=str(tmp_path / "outputs"),
        FASTWAN_MODEL="tiny",
        FASTWAN_TINY_DIR=str(tiny_dir),
        FASTWAN_WARMUP="0",
        HF_HUB_OFFLINE="1",
        ALLOW_PRIVATE_IMAGE_URLS="1",
        SHUTDOWN_GRACE_S="60",
        SALAD_HANDOFF_S="3",
        STAND_IN_RECORD=str(record),
        STAND_IN_JOBS=str(jobs),
        STAND_IN_REPORT_S="0.5",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(asked.is_set, 120, "the job to be in hand (its image asked for)")
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: httpx.get(f"{url}/ready", timeout=2).status_code == 503, 10, "the app to stop")
        late = httpx.post(f"{url}/generate", json={**job, "musetalk_job_id": "late-1"}, timeout=10)
        signalled_early = [entry for entry in events(record) if entry["event"] == "signal"]
        release.set()
        _, stderr = process.communicate(timeout=60)
    finally:
        release.set()
    seen = [(entry["event"], entry.get("job"), entry.get("status")) for entry in events(record)]

    assert late.status_code == 503 and late.json()["error_code"] == "worker_shutdown"
    assert signalled_early == [], "Salad's binary was signalled while the app still had the job"
    assert seen[1:] == [
        ("answered", "drain-1", 200),
        ("completed", "drain-1", None),
        ("signal", None, None),
    ], seen
    assert process.returncode == 0, stderr[-3000:]
