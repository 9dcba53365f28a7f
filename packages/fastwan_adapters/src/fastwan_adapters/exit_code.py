"""The exit status of every program of the image: both workers, the supervisor, the entrypoint.

One meaning per number, because whoever starts the process acts on the number alone: the
buffer supervisor restarts on 1 (and on death by a signal it did not send) and stops the
container on 2; Salad and ``docker --restart on-failure`` restart on anything but 0. So a
status says what a restart would do, not what went wrong: the log says that. The README's
table lists them; ``docs/salad.md`` and ``docs/vast.md`` refer to it.
"""

from __future__ import annotations

import enum

from fastwan_adapters.config import ConfigError

__all__ = ["ExitCode"]


class ExitCode(enum.IntEnum):
    """``OK``: stopped as asked (SIGTERM/SIGINT), the job in hand answered or reported.
    ``RESTART``: cannot go on, and a fresh process may (the GPU unusable after a CUDA error,
    the heartbeat dead, a start-up that failed for a reason that passes: the Hub or B2 still
    unreachable after the retries, a CUDA error at load; an unexpected error).
    ``CONFIG``: a bad setting, or a model that cannot be had (no GPU for the real model, not
    cached while offline, no such repository or file, gated without a token): restarting cannot
    help until the setting is fixed.
    """

    OK = 0
    RESTART = 1
    CONFIG = 2

    @classmethod
    def for_startup_failure(cls, error: BaseException) -> ExitCode:
        """``CONFIG`` for an error the operator must fix (a :class:`ConfigError`), else ``RESTART``."""
        return cls.CONFIG if isinstance(error, ConfigError) else cls.RESTART
