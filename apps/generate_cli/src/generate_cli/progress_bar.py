"""A progress reporter that draws a terminal progress bar (tqdm) instead of calling an orchestrator."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from fastwan_core import ProgressUpdate


class ProgressBar:
    """Shows overall progress in percent, the phase and the denoising step."""

    def __init__(self, enabled: bool = True) -> None:
        self._bar: Any = tqdm(total=100, unit="%", disable=not enabled, bar_format="{l_bar}{bar}| {elapsed}")

    def report(self, job_id: str, update: ProgressUpdate) -> None:
        if update.progress is not None:
            self._bar.n = round(update.progress * 100, 1)
        if update.phase is not None:
            step = f" step {update.step}/{update.total_steps}" if update.step else ""
            self._bar.set_description_str(f"{update.phase.value}{step}", refresh=False)
        elif update.is_terminal:
            self._bar.set_description_str(update.status.value, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
