"""The chaos run's processes, driven only as black boxes: programs, signals, HTTP, files and
environment variables, never the workers' internals (so the run holds the same whatever the
workers are made of inside).

- :class:`BufferFleet`: the image's supervisor, ``python -m buffer_worker.fleet``, with
  ``BUFFER_WORKERS=K`` and a stub ``nvidia-smi`` that lists K GPUs, so that it plans K workers
  (ids ``chaos-gpu{i}``, state ``STATE_DIR/gpu{i}``) and restarts one that dies after its own
  backoff (1 s, doubling). A wrapper named ``fastwan-buffer-worker`` stands first on its PATH: it
  records each worker's pid and, when the run asked for it, holds that worker's start for a
  while before it execs the real program. That is how a *late* restart (12-20 s after a
  SIGKILL) is made: the supervisor's backoff reaches such waits only after a few failures in a
  row (1, 2, 4, 8, 16 s), which a run of a few minutes cannot wait for every time.
- :class:`QueueNode`: one SaladCloud node, ``python -m queue_worker`` and, in front of it, its
  job-queue binary (a :class:`SaladQueueDouble` node). A node killed or stopped is started
  again after a while, as Salad reallocates a container.
- :class:`RssMonitor`: each worker process's resident memory, sampled from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import attrs

from fastwan_adapters.testing import SaladQueueDouble

__all__ = ["BufferFleet", "Life", "QueueNode", "RssMonitor", "free_port", "read_rss_mib"]

_WRAPPER: Final = r"""#!/usr/bin/env bash
# The chaos run's stand-in for fastwan-buffer-worker: holds a start when asked (a late restart),
# records the pid, then becomes the real program.
hold="${CHAOS_DIR}/hold/${BUFFER_WORKER_ID}"
if [[ -f "$hold" ]]; then
  seconds="$(cat "$hold")"
  rm -f "$hold"
  sleep "$seconds"
fi
echo "$$ ${BUFFER_WORKER_RESTARTS:-0}" > "${CHAOS_DIR}/pids/${BUFFER_WORKER_ID}.tmp"
mv "${CHAOS_DIR}/pids/${BUFFER_WORKER_ID}.tmp" "${CHAOS_DIR}/pids/${BUFFER_WORKER_ID}"
exec "${CHAOS_REAL_WORKER}" "$@"
"""
_NVIDIA_SMI: Final = r"""#!/usr/bin/env bash
if [[ "$*" == *--query-gpu=index* ]]; then
  for ((i = 0; i < ${CHAOS_GPUS:-1}; i++)); do echo "$i"; done
else
  echo "chaos CPU, 0 MiB, 0"
fi
"""
_STOP_WAIT_S: Final = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_rss_mib(pid: int) -> float | None:
    """``VmRSS`` of ``pid`` in MiB, or ``None`` once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


@attrs.define
class Life:
    """One process of one worker, from its start to its end (a restart begins a new life)."""

    worker: str
    pid: int
    started: float
    ended: float | None = None
    restarts: int = 0
    supervisor: int = 0  # which start of the buffer container it belongs to


class BufferFleet:
    """The supervisor and its K buffer workers, in ``folder``; each start is a container start.

    Args:
        env: the workers' environment (orchestrator, store, intervals, ...), without PATH.
    """

    def __init__(self, folder: Path, count: int, env: Mapping[str, str]) -> None:
        self.folder = folder
        self.count = count
        self.bin = folder / "bin"
        for sub in ("bin", "hold", "pids", "logs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self._write("fastwan-buffer-worker", _WRAPPER)
        self._write("nvidia-smi", _NVIDIA_SMI)
        real = Path(sys.executable).with_name("fastwan-buffer-worker")
        self.env = {
            **env,
            "PATH": f"{self.bin}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "BUFFER_WORKERS": str(count),
            "BUFFER_WORKER_ID": "chaos",
            "CHAOS_GPUS": str(count),
            "CHAOS_DIR": str(folder),
            "CHAOS_REAL_WORKER": str(real),
        }
        self.ids = [f"chaos-gpu{i}" for i in range(count)] if count > 1 else ["chaos"]
        self.lives: list[Life] = []
        self.supervisor: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._seen: dict[str, str] = {}

    def _write(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text)
        path.chmod(0o755)

    def state_dir(self, worker: str) -> Path:
        base = Path(self.env["STATE_DIR"])
        return base / worker.removeprefix("chaos-") if self.count > 1 else base

    def start(self) -> None:
        """Start the supervisor (a container start: the state folders are kept, a hold asked of
        a worker the last container never restarted is dropped)."""
        for hold in (self.folder / "hold").iterdir():
            hold.unlink()
        self.starts += 1
        log = self.folder / "logs" / f"supervisor-{self.starts}.log"
        self.supervisor = _spawn("buffer_worker.fleet", self.env, log)

    def stop(self, timeout: float = _STOP_WAIT_S) -> int | None:
        """SIGTERM to the supervisor (a container stop): every worker finishes or reports its job
        within its grace, then exits. Returns the supervisor's exit status."""
        process = self.supervisor
        if process is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait(10)
        self.supervisor = None
        self.poll()
        for life in self.lives:
            if life.ended is None:
                life.ended = time.monotonic()
        return status

    def kill_supervisor(self) -> None:
        """Only at the very end, if it would not stop: nothing may outlive the run."""
        if self.supervisor is not None and self.supervisor.poll() is None:
            os.killpg(self.supervisor.pid, signal.SIGKILL)
        for life in self.live():
            with contextlib.suppress(ProcessLookupError):
                os.kill(life.pid, signal.SIGKILL)

    def poll(self) -> None:
        """Note the workers started since the last look (their wrapper wrote a pid file) and the
        ones that are gone."""
        now = time.monotonic()
        for worker in self.ids:
            path = self.folder / "pids" / worker
            try:
                text = path.read_text()
            except OSError:
                continue
            if self._seen.get(worker) != text:
                self._seen[worker] = text
                pid, restarts = (int(part) for part in text.split())
                for life in self.lives:
                    if life.worker == worker and life.ended is None:
                        life.ended = now
                self.lives.append(Life(worker, pid, now, restarts=restarts, supervisor=self.starts))
        for life in self.lives:
            if life.ended is None and not _alive(life.pid):
                life.ended = now

    def live(self) -> list[Life]:
        self.poll()
        return [life for life in self.lives if life.ended is None]

    def current(self, worker: str) -> Life | None:
        return next((life for life in self.live() if life.worker == worker), None)

    def kill(self, worker: str, *, late_s: float = 0.0) -> bool:
        """SIGKILL the worker. The supervisor restarts it after its backoff (1 s, doubling with each
        restart); with ``late_s``, its start is held so that it runs again that long after the kill."""
        life = self.current(worker)
        if life is None:
            return False
        backoff = min(float(self.env.get("BUFFER_RESTART_BACKOFF_S") or 1.0) * 2**life.restarts, 60.0)
        if late_s > backoff:
            (self.folder / "hold" / worker).write_text(f"{late_s - backoff:.1f}\n")
        try:
            os.kill(life.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        life.ended = time.monotonic()
        return True


class QueueNode:
    """One Salad node: the queue worker on ``port`` and its job-queue binary (``salad`` node)."""

    def __init__(self, name: str, folder: Path, env: Mapping[str, str], salad: SaladQueueDouble) -> None:
        self.name = name
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **env,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WORKER_ID": f"chaos-{name}",
            "PUBLIC_BASE_URL": self.url,
        }
        self.salad = salad
        self.lives: list[Life] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.up_at: float | None = None  # when it is to start again, while it is down
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        """The container starts: the app, and the binary beside it (which waits for /ready)."""
        log = self.folder / f"{self.name}-{len(self.lives) + 1}.log"
        self.process = _spawn("queue_worker", self.env, log)
        self.lives.append(Life(f"chaos-{self.name}", self.process.pid, time.monotonic()))
        self.salad.attach(self.name, self.url)
        self.up_at = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, down_s: float) -> bool:
        """The node dies (SIGKILL to all of it): the binary with it, the request in flight lost."""
        if not self.running or self.process is None:
            return False
        self.process.kill()
        self.salad.stop(self.name)
        self._down(down_s)
        return True

    def stop(self, down_s: float, timeout: float = _STOP_WAIT_S) -> bool:
        """The node is stopped, as the image's entrypoint stops it: SIGTERM to the app and to the
        binary at once (the binary drops the request in flight)."""
        if not self.running or self.process is None:
            return False
        self.process.send_signal(signal.SIGTERM)
        self.salad.stop(self.name)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._down(down_s)
        return True

    def _down(self, down_s: float) -> None:
        if self.process is not None:
            self.process.wait(10)
        self.lives[-1].ended = time.monotonic()
        self.up_at = time.monotonic() + down_s

    def tick(self) -> None:
        """Start again once its time down is over."""
        if self.up_at is not None and time.monotonic() >= self.up_at:
            self.start()

    def end(self, timeout: float = _STOP_WAIT_S) -> None:
        """The run is over: stop it for good (SIGTERM, then SIGKILL if it will not go)."""
        if self.running and self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
        with contextlib.suppress(KeyError):
            self.salad.stop(self.name)
        if self.lives and self.lives[-1].ended is None:
            self.lives[-1].ended = time.monotonic()
        self.up_at = None


class RssMonitor:
    """Samples every live worker process's RSS every ``period_s`` on a thread of its own."""

    def __init__(self, fleet: BufferFleet, nodes: list[QueueNode], period_s: float = 0.5) -> None:
        self.fleet, self.nodes, self.period_s = fleet, nodes, period_s
        self.samples: dict[int, list[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rss-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            pids = [life.pid for life in self.fleet.lives if life.ended is None]
            pids += [node.lives[-1].pid for node in self.nodes if node.running and node.lives]
            now = time.monotonic()
            for pid in pids:
                rss = read_rss_mib(pid)
                if rss is not None:
                    with self._lock:
                        self.samples.setdefault(pid, []).append((now, rss))

    def at(self, pid: int, when: float) -> float | None:
        """The first sample of ``pid`` at or after ``when``."""
        with self._lock:
            return next((rss for at, rss in self.samples.get(pid, []) if at >= when), None)

    def tail(self, pid: int, count: int = 10) -> float | None:
        """The median of ``pid``'s last ``count`` samples (a job's working set comes and goes)."""
        with self._lock:
            values = [rss for _, rss in self.samples.get(pid, [])[-count:]]
        return statistics.median(values) if values else None

    def around(self, pid: int, when: float, seconds: float = 5.0) -> float | None:
        """The median of ``pid``'s samples within ``seconds`` of ``when``."""
        with self._lock:
            values = [rss for at, rss in self.samples.get(pid, []) if abs(at - when) <= seconds]
        return statistics.median(values) if values else None


def _spawn(module: str, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m module`` in a session of its own (no signal meant for the run reaches it),
    its output appended to ``log``."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped by the supervisor, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
