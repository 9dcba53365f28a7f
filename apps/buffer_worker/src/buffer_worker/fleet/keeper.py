"""Keeping the buffer workers running: start, watch, restart, forward signals, pick the exit status.

One thread per worker process only waits for it and posts its exit status; signal handlers only
post the signal (``queue.SimpleQueue.put`` is safe in a handler); the main thread takes one
event at a time and alone decides. So no decision races another, and a signal that arrives
during a backoff wait is acted on at once.

A worker's exit status decides (:class:`fastwan_adapters.exit_code.ExitCode`): 1, or death by
a signal the supervisor did not send, is a restart, after the backoff; 2 (a bad setting) stops
every worker and the container exits 2; 0 or another status ends that worker. SIGTERM/SIGINT
go to every worker as they came (a second one too: the worker's "stop now"), no worker is
restarted any more, and a worker still running ``stop_timeout_s`` after the first is killed.
SIGHUP (the terminal or the session went away) stops them the same way, sent on as SIGTERM:
its default action would end the supervisor alone and leave its workers running unwatched.
The container then exits with the first non-zero status a worker ended with, else 0.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Final

import attrs

from buffer_worker.fleet.backoff import RestartBackoff
from buffer_worker.fleet.plan import WorkerPlan
from fastwan_adapters.exit_code import ExitCode

__all__ = ["RESTARTS_ENV", "Keeper"]

log = logging.getLogger(__name__)

#: How many times the supervisor has restarted this worker; the worker sends it as ``restarts``.
RESTARTS_ENV: Final = "BUFFER_WORKER_RESTARTS"
_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@attrs.define
class _Slot:
    """One supervised worker across its restarts."""

    plan: WorkerPlan
    backoff: RestartBackoff
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None
    status: int | None = None  # set once the worker has ended for good


class Keeper:
    """Runs ``command`` once per plan and keeps each running; :meth:`run` returns the exit status.

    Args:
        backoff: makes one backoff per worker.
        stop_timeout_s: after the first stop signal, how long a worker may take to exit.
    """

    def __init__(
        self,
        plans: Sequence[WorkerPlan],
        command: Sequence[str],
        *,
        backoff: Callable[[], RestartBackoff],
        stop_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slots = [_Slot(plan, backoff()) for plan in plans]
        self._command = list(command)
        self._stop_timeout_s = stop_timeout_s
        self._clock = clock
        self._events: queue.SimpleQueue[tuple[str, int, int]] = queue.SimpleQueue()
        self._stopping = False
        self._kill_at: float | None = None
        self._first_failure: int | None = None
        self._config_error = False

    def run(self) -> int:
        previous = {signum: signal.signal(signum, self._on_signal) for signum in _STOP_SIGNALS}
        try:
            for index in range(len(self._slots)):
                self._start(index)
            while any(slot.status is None for slot in self._slots):
                self._step()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if self._config_error:
            return ExitCode.CONFIG
        return self._first_failure or 0

    # -- events -----------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._events.put(("signal", signum, 0))

    def _step(self) -> None:
        try:
            kind, first, second = self._events.get(timeout=self._wait_s())
        except queue.Empty:
            kind, first, second = "tick", 0, 0
        if kind == "signal":
            forwarded = signal.SIGTERM if first == signal.SIGHUP else first
            self._stop(forwarded, f"received {signal.Signals(first).name}")
        elif kind == "exit":
            self._exited(first, second)
        now = self._clock()
        for index, slot in enumerate(self._slots):
            if slot.restart_at is not None and now >= slot.restart_at:
                self._start(index)
        if self._kill_at is not None and now >= self._kill_at:
            self._kill_at = None
            for slot in self._running():
                log.error(
                    "%s still running %g s after the stop signal; sending SIGKILL",
                    slot.plan.name,
                    self._stop_timeout_s,
                )
                _send(slot, signal.SIGKILL)

    def _wait_s(self) -> float | None:
        deadlines = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        if self._kill_at is not None:
            deadlines.append(self._kill_at)
        return max(0.0, min(deadlines) - self._clock()) if deadlines else None

    # -- decisions --------------------------------------------------------------------------

    def _start(self, index: int) -> None:
        slot = self._slots[index]
        slot.restart_at = None
        env = {**slot.plan.env, RESTARTS_ENV: str(slot.restarts)}
        try:
            # Its own session: a Ctrl-C in a terminal reaches the supervisor only, which
            # forwards it once, instead of reaching each worker twice.
            process = subprocess.Popen(self._command, env=env, start_new_session=True)  # noqa: S603 our own program
        except OSError as error:
            log.error("%s cannot be started: %s", slot.plan.name, error.strerror or error)
            self._end(slot, 127)
            return
        slot.process, slot.started_at = process, self._clock()
        gpu = f" on GPU {slot.plan.gpu}" if slot.plan.gpu is not None else ""
        log.info("started %s%s (pid %d, restarts %d)", slot.plan.name, gpu, process.pid, slot.restarts)
        threading.Thread(
            target=self._await_exit, args=(index, process), name=f"wait-{slot.plan.name}", daemon=True
        ).start()

    def _await_exit(self, index: int, process: subprocess.Popen[bytes]) -> None:
        self._events.put(("exit", index, process.wait()))

    def _exited(self, index: int, returncode: int) -> None:
        slot = self._slots[index]
        slot.process = None
        uptime = self._clock() - slot.started_at
        how = _describe(returncode)
        if self._stopping:
            log.info("%s %s", slot.plan.name, how)
            self._end(slot, _status(returncode))
        elif returncode == ExitCode.RESTART or returncode < 0:
            delay = slot.backoff.delay(uptime)
            slot.restarts += 1
            slot.restart_at = self._clock() + delay
            log.warning(
                "%s %s after %.1f s; restart %d in %g s", slot.plan.name, how, uptime, slot.restarts, delay
            )
        elif returncode == ExitCode.CONFIG:
            log.error("%s %s (a bad setting): stopping every worker", slot.plan.name, how)
            self._config_error = True
            self._end(slot, ExitCode.CONFIG)
            self._stop(signal.SIGTERM, "a worker cannot start")
        else:
            log.warning("%s %s; not restarted", slot.plan.name, how)
            self._end(slot, _status(returncode))

    def _stop(self, signum: int, why: str) -> None:
        """Forward ``signum`` to every running worker; restart none of them any more."""
        running = self._running()
        log.info("%s: sending %s to %d worker(s)", why, signal.Signals(signum).name, len(running))
        if not self._stopping:
            self._stopping = True
            self._kill_at = self._clock() + self._stop_timeout_s
            for slot in self._slots:
                if slot.restart_at is not None:  # waiting to restart: it stays ended
                    slot.restart_at = None
                    self._end(slot, ExitCode.RESTART)
        for slot in running:
            _send(slot, signum)

    def _end(self, slot: _Slot, status: int) -> None:
        slot.status = status
        if status != 0 and self._first_failure is None:
            self._first_failure = status

    def _running(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.process is not None]


def _send(slot: _Slot, signum: int) -> None:
    if slot.process is not None:
        with contextlib.suppress(ProcessLookupError):  # exited meanwhile: its waiter reports it
            slot.process.send_signal(signum)


def _status(returncode: int) -> int:
    """A shell's exit status: 128 + the signal for a worker killed by one."""
    return 128 - returncode if returncode < 0 else returncode


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} (status {_status(returncode)})"
    return f"exited with status {returncode}"
