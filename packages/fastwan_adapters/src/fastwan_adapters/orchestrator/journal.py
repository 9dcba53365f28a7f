"""The claim journal: which job this worker holds, on disk, so that a killed worker still ends it.

The outbox protects a terminal status once it is written; a worker killed before that (SIGKILL
by the OOM killer, a Vast interruption, a power cut) would leave its job claimed by nobody until
the orchestrator's own timeout. So a claimed job is written here, durably, before work on it
starts, and removed once its terminal status is in the outbox or the orchestrator says the job
is no longer ours. Whatever is left at the next start is a job the worker died with.

Same durability as the outbox (``durable.write_atomically``): after a crash an entry is whole
or absent. An entry that cannot be read is set aside (``*.corrupt``) with an error log: not a
regular file (a FIFO is never opened in a way that waits), not strict JSON, an id that is not a
contract id (ids become file names and URL paths), a time that is not a finite number. A folder
that cannot be listed is moved aside whole. None of it may turn into a crash loop.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Final

import attrs

from fastwan_adapters.durable import (
    fsync_directory,
    read_json_file,
    remove_temp_files,
    why_unreadable,
    write_atomically,
)
from fastwan_core import is_job_id

__all__ = ["JOURNAL_DIR_NAME", "ClaimJournal", "ClaimRecord"]

log = logging.getLogger(__name__)

JOURNAL_DIR_NAME: Final = "claim-journal"
_SUFFIX: Final = ".claim.json"
_CORRUPT_SUFFIX: Final = ".corrupt"
_TEMP_PREFIX: Final = ".tmp-"
_FORMAT_VERSION: Final = 1


@attrs.frozen
class ClaimRecord:
    """One claimed job in the journal.

    Attributes:
        musetalk_job_id: the orchestrator's job id, when the claimed job had a readable one.
        claimed_at: when it was claimed (wall clock, seconds since the epoch).
    """

    buffer_job_id: str
    musetalk_job_id: str | None
    claimed_at: float


class ClaimJournal:
    """Claimed jobs kept on disk until their terminal status is in the outbox.

    Args:
        state_dir: ``STATE_DIR``; the journal lives in its ``claim-journal`` folder (created).
    """

    def __init__(self, state_dir: Path | str) -> None:
        self._dir = Path(state_dir) / JOURNAL_DIR_NAME
        if self._dir.exists() and not self._dir.is_dir():
            self._move_aside("it is not a folder")
        self._dir.mkdir(parents=True, exist_ok=True)
        remove_temp_files(self._dir, _TEMP_PREFIX)  # records that crashed before os.replace

    @property
    def directory(self) -> Path:
        return self._dir

    def record(self, buffer_job_id: str, musetalk_job_id: str | None) -> ClaimRecord:
        """Write the claim durably; when this returns, a crash can no longer lose the job.

        Raises:
            ValueError: ``buffer_job_id`` or ``musetalk_job_id`` is not a contract id.
            OSError: the journal cannot be written.
        """
        if not is_job_id(buffer_job_id):
            raise ValueError(f"buffer_job_id is not a contract id: {buffer_job_id!r}")
        if musetalk_job_id is not None and not is_job_id(musetalk_job_id):
            raise ValueError(f"musetalk_job_id is not a contract id: {musetalk_job_id[:64]!r}")
        entry = ClaimRecord(buffer_job_id, musetalk_job_id, time.time())
        data = json.dumps({"version": _FORMAT_VERSION, **attrs.asdict(entry)}).encode()
        write_atomically(self._path(buffer_job_id), data, temp_prefix=_TEMP_PREFIX)
        return entry

    def forget(self, buffer_job_id: str) -> None:
        """The job's terminal status is in the outbox, or the job is no longer ours.

        Never raises: the worse outcome of a failed removal is one extra ``failed`` status at the
        next start, which the orchestrator answers 409 for a job it has already closed.
        """
        if not is_job_id(buffer_job_id):
            return
        try:
            self._path(buffer_job_id).unlink(missing_ok=True)
        except OSError as error:
            log.error("claim journal: could not remove %s: %s", buffer_job_id, error.strerror or error)
            return
        fsync_directory(self._dir)

    def orphans(self) -> list[ClaimRecord]:
        """The jobs left by an earlier run, oldest first (call it at start, before claiming)."""
        try:
            paths = sorted(self._dir.glob(f"*{_SUFFIX}"))
        except OSError as error:
            self._move_aside(error.strerror or type(error).__name__)
            return []
        entries = [entry for path in paths if (entry := self._read(path)) is not None]
        return sorted(entries, key=lambda entry: (entry.claimed_at, entry.buffer_job_id))

    def _path(self, buffer_job_id: str) -> Path:
        return self._dir / f"{buffer_job_id}{_SUFFIX}"

    def _read(self, path: Path) -> ClaimRecord | None:
        try:
            entry = _entry(read_json_file(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            aside = path.with_name(path.name + _CORRUPT_SUFFIX)
            log.error(
                "claim journal file %s is unreadable (%s); set aside as %s: the job it held, if any, "
                "is not reported",
                path.name,
                why_unreadable(error),
                aside.name,
            )
            _replace_quietly(path, aside)
            return None
        return entry

    def _move_aside(self, why: str) -> None:
        aside = self._dir.with_name(f"{JOURNAL_DIR_NAME}.unreadable-{time.time_ns()}")
        log.error(
            "claim journal %s cannot be read (%s); moved aside as %s and started empty",
            self._dir,
            why,
            aside.name,
        )
        _replace_quietly(self._dir, aside)
        self._dir.mkdir(parents=True, exist_ok=True)


def _entry(record: object) -> ClaimRecord:
    """The claim ``record`` describes, checked: both ids contract ids (they name files and URL
    paths: ``../../x`` must never reach one), a finite time.

    Raises:
        ValueError: saying which field is wrong.
    """
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
    buffer_job_id, job_id, claimed_at = (
        record.get(key) for key in ("buffer_job_id", "musetalk_job_id", "claimed_at")
    )
    if not is_job_id(buffer_job_id):
        raise ValueError("its buffer_job_id is not a contract id")
    if job_id is not None and not is_job_id(job_id):
        raise ValueError("its musetalk_job_id is not a contract id")
    if (
        isinstance(claimed_at, bool)
        or not isinstance(claimed_at, int | float)
        or not math.isfinite(claimed_at)
    ):
        raise ValueError("its claimed_at is not a finite number")
    return ClaimRecord(buffer_job_id=buffer_job_id, musetalk_job_id=job_id, claimed_at=float(claimed_at))


def _replace_quietly(path: Path, target: Path) -> None:
    try:
        path.replace(target)
        fsync_directory(path.parent)
    except OSError as error:
        log.error("could not move %s aside: %s", path, error.strerror or type(error).__name__)
