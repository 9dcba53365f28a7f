"""How long to wait before restarting a worker that asked for it.

A worker that fails at once, again and again (a broken GPU, an orchestrator that rejects it),
must not spin: each restart waits twice as long as the last, up to a minute. A worker that ran
for ten minutes before failing was healthy; its next failure starts from the first wait again.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["DEFAULT_INITIAL_S", "MAX_S", "RESET_AFTER_S", "RestartBackoff"]

DEFAULT_INITIAL_S: Final = 1.0
MAX_S: Final = 60.0
RESET_AFTER_S: Final = 600.0


@attrs.define
class RestartBackoff:
    """``initial_s``, doubling to ``max_s``; back to ``initial_s`` after ``reset_after_s`` up."""

    initial_s: float = DEFAULT_INITIAL_S
    max_s: float = MAX_S
    reset_after_s: float = RESET_AFTER_S
    _next_s: float | None = None

    def delay(self, uptime_s: float) -> float:
        """The wait before the restart of a worker that ran ``uptime_s`` seconds this time."""
        if self._next_s is None or uptime_s >= self.reset_after_s:
            self._next_s = self.initial_s
        delay = min(self._next_s, self.max_s)
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay
