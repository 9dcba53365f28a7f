"""The real clock port."""

from __future__ import annotations

import time


class MonotonicClock:
    """``time.monotonic``: immune to wall-clock jumps, so timings and throttles stay honest."""

    def now(self) -> float:
        return time.monotonic()
