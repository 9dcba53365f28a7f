"""Threads that carry the caller's log context: the job id on every line a job's thread logs.

``fastwan_adapters.logs`` binds the job id in a context variable; a new thread starts with an
empty context, so a thread that works for a job runs in a copy of its starter's context. It
is a daemon: the process never waits for it at exit, so a worker told to exit cannot hang on a
CUDA call (or an orchestrator call) that never returns.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable

__all__ = ["daemon_thread"]


def daemon_thread(target: Callable[..., object], *args: object, name: str) -> threading.Thread:
    """A daemon thread, not yet started, that runs ``target(*args)`` in a copy of the context
    as it is now (not as it is when the thread is started)."""
    context = contextvars.copy_context()
    return threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)
