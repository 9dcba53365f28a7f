"""The buffer-mode supervisor for real: the entrypoint execs it, it runs stub workers.

Each stub worker records its environment, pid and signals under its worker id and restart
count (``vast-1-gpu0.2.env``: the second restart of the first GPU's worker), and exits when the
test writes its exit code, or on SIGTERM with the code written for that. A stub ``nvidia-smi``
lists the GPUs. The restart backoff starts at 0.05 s, so restarts take no time to wait for.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_entrypoint import DEADLINE_S, SCRIPT, Sandbox, is_running

SUPERVISOR = "fastwan-buffer-supervisor"
BACKOFF_S = "0.05"

WORKER_STUB = r"""#!/usr/bin/env bash
rec="${STUB_RECORD_DIR}/${BUFFER_WORKER_ID}.${BUFFER_WORKER_RESTARTS}"
env > "$rec.env"
trap 'echo TERM >> "$rec.signals"; exit "$(cat "$rec.term_exit" 2>/dev/null || echo 0)"' TERM
trap 'echo INT >> "$rec.signals"; exit 0' INT
echo $$ > "$rec.pid.tmp" && mv "$rec.pid.tmp" "$rec.pid"
while :; do
  [[ -f "$rec.exit" ]] && exit "$(cat "$rec.exit")"
  sleep 0.02
done
"""

NVIDIA_SMI_STUB = r"""#!/usr/bin/env bash
if [[ "$*" == *--query-gpu=index* ]]; then
  for ((i = 0; i < ${STUB_GPUS:-1}; i++)); do echo "$i"; done
else
  echo "NVIDIA H100 80GB HBM3, 81559 MiB, 570.86.10"
fi
"""


class Fleet(Sandbox):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._write("fastwan-buffer-worker", WORKER_STUB)
        self._write("nvidia-smi", NVIDIA_SMI_STUB)
        self._write(SUPERVISOR, f'#!/usr/bin/env bash\nexec "{sys.executable}" -m buffer_worker.fleet "$@"\n')
        self.log_path = root / "supervisor.log"

    def _write(self, name: str, text: str) -> None:
        path = self.bin_dir / name
        path.write_text(text)
        path.chmod(0o755)

    def launch(self, **env: str) -> subprocess.Popen[str]:
        """The entrypoint in buffer mode; its log goes to a file that tests may read while it runs."""
        full_env = {
            "PATH": f"{self.bin_dir}:{self.tools_dir}",
            "STUB_RECORD_DIR": str(self.record_dir),
            "WORKER_MODE": "buffer",
            "BUFFER_WORKER_ID": "vast-1",
            "BUFFER_RESTART_BACKOFF_S": BACKOFF_S,
            **_pythonpath(),
            **env,
        }
        with self.log_path.open("w") as log:
            process = subprocess.Popen([str(SCRIPT)], env=full_env, stdout=log, stderr=log, text=True)
        self.processes.append(process)
        return process

    def finish(self, process: subprocess.Popen[str]) -> tuple[int, str]:
        return process.wait(timeout=DEADLINE_S), self.log()

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_logged(self, text: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while text not in self.log():
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not logged within {DEADLINE_S}s:\n{self.log()}")
            time.sleep(0.01)

    def started_as(self, name: str) -> bool:
        return self.record(name, "env").exists()

    def worker(self, worker_id: str, restart: int = 0) -> str:
        return f"{worker_id}.{restart}"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    box = Fleet(tmp_path)
    yield box
    box.close()


def restarts_logged(stderr: str) -> list[tuple[str, str]]:
    """(what ended the worker, the backoff) of every restart the supervisor logged."""
    return re.findall(r"(exited with status \d+|was killed by \w+) .*?; restart \d+ in ([\d.]+) s", stderr)


def test_a_worker_that_exits_1_is_restarted_with_a_growing_backoff_and_counted(fleet: Fleet) -> None:
    process = fleet.launch()
    for restart in range(3):
        fleet.wait_started(fleet.worker("vast-1", restart))
        fleet.set_exit(fleet.worker("vast-1", restart), 1)
    fleet.wait_started(fleet.worker("vast-1", 3))

    process.send_signal(signal.SIGTERM)
    status, stderr = fleet.finish(process)

    assert status == 0
    assert restarts_logged(stderr) == [("exited with status 1", d) for d in ("0.05", "0.1", "0.2")]
    env = fleet.env_of(fleet.worker("vast-1", 3))
    assert (env["BUFFER_WORKER_RESTARTS"], env["BUFFER_WORKER_ID"]) == ("3", "vast-1")
    assert fleet.env_of(fleet.worker("vast-1", 0))["BUFFER_WORKER_RESTARTS"] == "0"


def test_a_worker_killed_by_a_signal_it_was_not_sent_is_restarted(fleet: Fleet) -> None:
    process = fleet.launch()
    pid = fleet.wait_started(fleet.worker("vast-1"))

    os.kill(pid, signal.SIGKILL)
    fleet.wait_started(fleet.worker("vast-1", 1))
    process.send_signal(signal.SIGTERM)
    status, stderr = fleet.finish(process)

    assert status == 0
    assert restarts_logged(stderr) == [("was killed by SIGKILL", BACKOFF_S)]


def test_a_configuration_error_stops_the_container_with_status_2_and_no_restart(fleet: Fleet) -> None:
    process = fleet.launch()
    fleet.set_exit(fleet.worker("vast-1"), 2)

    status, stderr = fleet.finish(process)

    assert status == 2
    assert "exited with status 2 (a bad setting)" in stderr
    assert not fleet.started_as(fleet.worker("vast-1", 1))


@pytest.mark.parametrize(
    ("stop", "term_exit"), [(signal.SIGTERM, 0), (signal.SIGTERM, 1), (signal.SIGINT, 0)]
)
def test_a_stop_signal_reaches_the_worker_once_and_the_container_exits_with_its_status(
    fleet: Fleet, stop: signal.Signals, term_exit: int
) -> None:
    process = fleet.launch()
    name = fleet.worker("vast-1")
    fleet.wait_started(name)
    fleet.record(name, "term_exit").write_text(str(term_exit))

    process.send_signal(stop)
    status, _ = fleet.finish(process)

    assert status == term_exit  # an exit 1 while stopping is not restarted either
    assert fleet.signals(name) == [stop.name.removeprefix("SIG")]
    assert not fleet.started_as(fleet.worker("vast-1", 1))


def test_sighup_stops_the_workers_as_sigterm_does_instead_of_leaving_them_unwatched(fleet: Fleet) -> None:
    process = fleet.launch(STUB_GPUS="2")
    names = [fleet.worker(f"vast-1-gpu{i}") for i in range(2)]
    pids = [fleet.wait_started(name) for name in names]

    process.send_signal(signal.SIGHUP)
    status, log = fleet.finish(process)

    assert status == 0, log
    assert [fleet.signals(name) for name in names] == [["TERM"], ["TERM"]]
    assert not any(is_running(pid) for pid in pids)


def test_a_stop_during_the_backoff_restarts_nothing(fleet: Fleet) -> None:
    process = fleet.launch(BUFFER_RESTART_BACKOFF_S="30")
    fleet.wait_started(fleet.worker("vast-1"))
    fleet.set_exit(fleet.worker("vast-1"), 1)
    fleet.wait_logged("restart 1 in 30 s")

    process.send_signal(signal.SIGTERM)
    status, _ = fleet.finish(process)

    assert status == 1  # the worker's last word
    assert not fleet.started_as(fleet.worker("vast-1", 1))


def test_two_gpus_get_a_worker_each_with_its_own_device_id_state_and_port_and_both_are_signalled(
    fleet: Fleet, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    process = fleet.launch(STUB_GPUS="2", STATE_DIR=str(state), METRICS_PORT="9100")
    names = [fleet.worker(f"vast-1-gpu{i}") for i in range(2)]
    pids = [fleet.wait_started(name) for name in names]

    for index, name in enumerate(names):
        env = fleet.env_of(name)
        assert (env["CUDA_VISIBLE_DEVICES"], env["BUFFER_WORKER_ID"]) == (str(index), f"vast-1-gpu{index}")
        assert (env["STATE_DIR"], env["METRICS_PORT"]) == (f"{state}/gpu{index}", str(9100 + index))
    fleet.set_exit(names[1], 1)  # each one is supervised on its own
    fleet.wait_started(fleet.worker("vast-1-gpu1", 1))
    assert is_running(pids[0])

    process.send_signal(signal.SIGTERM)
    status, _ = fleet.finish(process)

    assert status == 0
    assert fleet.signals(names[0]) == ["TERM"]
    assert fleet.signals(fleet.worker("vast-1-gpu1", 1)) == ["TERM"]


def test_the_container_ends_only_when_every_worker_has_ended(fleet: Fleet) -> None:
    process = fleet.launch(STUB_GPUS="2")
    names = [fleet.worker(f"vast-1-gpu{i}") for i in range(2)]
    for name in names:
        fleet.wait_started(name)

    fleet.set_exit(names[0], 0)
    time.sleep(0.2)  # room for a wrong early exit to show
    assert process.poll() is None
    fleet.set_exit(names[1], 5)

    assert fleet.finish(process)[0] == 5


def test_with_one_gpu_nothing_changes(fleet: Fleet, tmp_path: Path) -> None:
    process = fleet.launch(STUB_GPUS="1", STATE_DIR=str(tmp_path / "state"), METRICS_PORT="9100")
    name = fleet.worker("vast-1")
    fleet.wait_started(name)

    env = fleet.env_of(name)
    assert (env["BUFFER_WORKER_ID"], env["STATE_DIR"], env["METRICS_PORT"]) == (
        "vast-1",
        str(tmp_path / "state"),
        "9100",
    )
    assert "CUDA_VISIBLE_DEVICES" not in env
    fleet.set_exit(name, 0)
    assert fleet.finish(process)[0] == 0


def test_more_workers_than_gpus_is_a_configuration_error(fleet: Fleet) -> None:
    status, log = fleet.finish(fleet.launch(BUFFER_WORKERS="3", STUB_GPUS="2"))

    assert status == 2
    assert "BUFFER_WORKERS=3 needs as many GPUs, but the container sees 2" in log
    assert not fleet.started_as(fleet.worker("vast-1-gpu0"))


def _pythonpath() -> dict[str, str]:
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
