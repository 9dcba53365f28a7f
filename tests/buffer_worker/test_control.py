"""Stop control: deadlines after a signal or a restart, and the delivery window they close."""

from __future__ import annotations

import threading
import time

from buffer_worker.board import StopReason
from buffer_worker.control import JobDeadline, Leaving, StopControl


class Clock:
    def __init__(self) -> None:
        self.time = 100.0

    def __call__(self) -> float:
        return self.time


def control(clock: Clock) -> StopControl:
    return StopControl(shutdown_grace_s=25.0, stop_wait_s=3.0, final_report_s=5.0, clock=clock)


def test_a_worker_that_is_not_leaving_has_no_deadline_and_an_open_window() -> None:
    clock = Clock()
    ctl = control(clock)

    assert (ctl.leaving, ctl.stop_job_at(), ctl.give_up_at(), ctl.leave_by()) == (None, None, None, None)
    assert not ctl.stop.is_set()
    assert not ctl.delivery_window().is_set()


def test_a_stop_request_gives_the_job_its_grace_then_the_reports_their_reserve() -> None:
    clock = Clock()
    ctl = control(clock)

    ctl.request_stop()

    assert ctl.stop.is_set() and ctl.wake.is_set()
    assert ctl.leaving is Leaving.SHUTDOWN
    assert (ctl.stop_job_at(), ctl.give_up_at(), ctl.leave_by()) == (125.0, 128.0, 133.0)
    window = ctl.delivery_window()
    clock.time = 132.9
    assert not window.is_set()
    clock.time = 133.0
    assert window.is_set()


def test_a_restart_stops_the_job_now_and_outranks_a_shutdown() -> None:
    clock = Clock()
    ctl = control(clock)
    ctl.request_stop()
    clock.time = 101.0

    ctl.request_restart("the heartbeat thread stopped")
    ctl.request_restart("a second reason")

    assert ctl.leaving is Leaving.RESTART
    assert ctl.restart_reason == "the heartbeat thread stopped"
    assert ctl.stop_job_at() == 100.0  # since the first stop request: no grace for a restart


def test_the_job_in_hand_is_stopped_after_the_grace_and_given_up_on_after_the_stop_wait() -> None:
    clock = Clock()
    ctl = control(clock)
    assert ctl.job_deadline(100.0, 1.0) == JobDeadline(None, give_up=False, wait_s=1.0)

    ctl.request_stop()

    assert ctl.job_deadline(124.5, 1.0) == JobDeadline(None, give_up=False, wait_s=0.5)
    assert ctl.job_deadline(125.0, 1.0) == JobDeadline(StopReason.SHUTDOWN, give_up=False, wait_s=1.0)
    assert ctl.job_deadline(127.5, 1.0) == JobDeadline(StopReason.SHUTDOWN, give_up=False, wait_s=0.5)
    assert ctl.job_deadline(128.0, 1.0) == JobDeadline(StopReason.SHUTDOWN, give_up=True, wait_s=0.0)


def test_for_a_restart_the_job_in_hand_is_stopped_at_once() -> None:
    clock = Clock()
    ctl = control(clock)

    ctl.request_restart("the GPU is unusable")

    assert ctl.job_deadline(100.0, 1.0) == JobDeadline(StopReason.RESTART, give_up=False, wait_s=1.0)
    assert ctl.job_deadline(103.0, 1.0) == JobDeadline(StopReason.RESTART, give_up=True, wait_s=0.0)


def test_a_side_task_death_asks_for_a_restart() -> None:
    ctl = control(Clock())

    ctl.side_task_died(RuntimeError("boom"))

    assert ctl.leaving is Leaving.RESTART
    assert ctl.restart_reason == "the heartbeat thread stopped (RuntimeError)"


def test_the_second_signal_closes_the_delivery_window_and_wakes_its_wait_at_once() -> None:
    ctl = StopControl(shutdown_grace_s=25.0)
    window = ctl.delivery_window()
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(window.wait(30.0)))
    waiter.start()
    time.sleep(0.05)

    started = time.monotonic()
    ctl.abort_now()
    waiter.join(5)

    assert outcome == [True]
    assert time.monotonic() - started < 1.0
    assert ctl.stop.is_set()


def test_an_open_window_waits_out_its_timeout_and_says_so() -> None:
    window = StopControl(shutdown_grace_s=25.0).delivery_window()

    started = time.monotonic()
    assert window.wait(0.05) is False
    assert time.monotonic() - started >= 0.05
