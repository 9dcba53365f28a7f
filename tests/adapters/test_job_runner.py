"""The job thread: one call at a time, in order, in its caller's context, never waited for at exit."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from fastwan_adapters.job_runner import JobRunner

_JOB: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)


def test_calls_run_on_one_daemon_thread_in_order_in_their_callers_context() -> None:
    runner = JobRunner(name="job")
    seen: list[tuple[str | None, str, bool]] = []

    def call(name: str) -> str:
        thread = threading.current_thread()
        seen.append((_JOB.get(), thread.name, thread.daemon))
        return name

    async def one(job_id: str) -> str:
        _JOB.set(job_id)  # each task has a context of its own
        return await runner.run(lambda: call(job_id))

    async def scenario() -> list[str]:
        return list(await asyncio.gather(one("j-1"), one("j-2"), one("j-3")))

    assert asyncio.run(scenario()) == ["j-1", "j-2", "j-3"]
    assert seen == [("j-1", "job", True), ("j-2", "job", True), ("j-3", "job", True)]
    assert not runner.busy


def test_an_error_reaches_the_caller_and_the_thread_goes_on() -> None:
    runner = JobRunner()

    def fails() -> None:
        raise KeyError("a bug")

    async def scenario() -> int:
        with pytest.raises(KeyError):
            await runner.run(fails)
        return await runner.run(lambda: 7)

    assert asyncio.run(scenario()) == 7


def test_a_caller_that_stops_waiting_does_not_stop_the_call_and_busy_says_so() -> None:
    runner = JobRunner()
    release = threading.Event()
    started = threading.Event()

    def long_call() -> str:
        started.set()
        release.wait(10)
        return "done"

    async def scenario() -> bool:
        waiting = asyncio.ensure_future(runner.run(long_call))
        await asyncio.to_thread(started.wait, 10)
        waiting.cancel()
        await asyncio.sleep(0.05)
        return runner.busy

    assert asyncio.run(scenario()) is True
    release.set()
    assert asyncio.run(runner.run(lambda: "next")) == "next"  # after the first one, on the same thread


def test_a_closed_runner_ends_its_thread_after_its_calls_and_takes_no_more() -> None:
    runner = JobRunner(name="job-closing")

    async def scenario() -> str:
        first = await runner.run(lambda: "first")
        runner.close()
        with pytest.raises(RuntimeError, match="closed"):
            await runner.run(lambda: "second")
        return first

    assert asyncio.run(scenario()) == "first"
    thread = next((t for t in threading.enumerate() if t.name == "job-closing"), None)
    if thread is not None:
        thread.join(5)
        assert not thread.is_alive()
