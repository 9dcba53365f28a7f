"""A thread that works for a job logs under its job id: it runs in a copy of its starter's context."""

from __future__ import annotations

import contextvars

from fastwan_adapters.threads import daemon_thread

_JOB: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)


def test_the_thread_sees_the_context_as_it_was_made_and_does_not_keep_the_process_alive() -> None:
    seen: list[tuple[str | None, str]] = []
    token = _JOB.set("j-1")
    try:
        thread = daemon_thread(lambda suffix: seen.append((_JOB.get(), suffix)), "ran", name="job-j-1")
    finally:
        _JOB.reset(token)
    later = _JOB.set("j-2")  # what the caller binds after making it does not travel
    try:
        thread.start()
        thread.join(10)
    finally:
        _JOB.reset(later)

    assert seen == [("j-1", "ran")]
    assert thread.daemon and thread.name == "job-j-1"
