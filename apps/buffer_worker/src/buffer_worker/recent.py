"""The results of the last few jobs this worker ended, so that a job claimed again is not run again.

An orchestrator that hands out a job this worker has just finished (its status was lost on
the way, or a retry raced the status) would otherwise get the whole generation again. Only an
end that a new run would repeat is kept: a success (the video is there) and a failure that is
not retryable (the same input fails the same way). A retryable failure or a cancellation is
left out: claiming such a job again is how the orchestrator retries it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from fastwan_core import JobResult, JobState

__all__ = ["RecentResults"]

_KEPT: Final = 32  # a few hours of jobs at the least; the memory is a few KiB each


class RecentResults:
    """``buffer_job_id`` -> the terminal result it was reported with, the newest ``size`` jobs."""

    def __init__(self, size: int = _KEPT) -> None:
        self._size = size
        self._results: OrderedDict[str, tuple[str | None, JobResult]] = OrderedDict()

    def remember(self, buffer_job_id: str, job_id: str | None, result: JobResult) -> None:
        final = result.status is JobState.SUCCEEDED or (
            result.status is JobState.FAILED and not result.retryable
        )
        self._results.pop(buffer_job_id, None)
        if final:
            self._results[buffer_job_id] = (job_id, result)
            while len(self._results) > self._size:
                self._results.popitem(last=False)

    def recall(self, buffer_job_id: str, job_id: str | None) -> JobResult | None:
        """The result to report again for this claim, if it is the same job ended here."""
        kept = self._results.get(buffer_job_id)
        if kept is None or kept[0] != job_id:
            return None
        return kept[1]
