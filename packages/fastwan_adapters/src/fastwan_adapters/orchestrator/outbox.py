"""The terminal-status outbox: a job's last word survives crashes and orchestrator outages.

The contract says a terminal status is never dropped. So it is written to ``STATE_DIR`` before
it is sent (temp file, fsync, ``os.replace``, fsync of the folder: after a crash the entry is
either whole or absent), and removed right after the orchestrator records it or says the job
is gone, before anything else happens, so that the window in which a crash could send it twice
is as short as it can be. At start, whatever is left is sent first, oldest first.

A resend after a crash in that window reaches an orchestrator that has already recorded the
status; it answers 409 (the job is no longer open), which ends delivery as ``GONE``.

What is read back is checked as hard as what is sent: ``STATE_DIR`` may hold anything a person
or another program left there. An entry ``put`` could not have written (not a regular file, not
strict JSON, an id that is not a contract id or not the one its name says) is set aside as
``*.corrupt`` with an error log, and a status the client cannot even build a request for is a
failure of that entry (``REJECTED``), never of the flush.

One worker process owns a ``STATE_DIR``; two processes sharing one could send a status twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import attrs

from fastwan_adapters.durable import (
    fsync_directory,
    read_json_file,
    remove_temp_files,
    why_unreadable,
    write_atomically,
)
from fastwan_adapters.orchestrator.messages import StatusOutcome
from fastwan_core import is_job_id

__all__ = ["OUTBOX_DIR_NAME", "PendingStatus", "StatusOutbox", "StatusSender"]

log = logging.getLogger(__name__)

OUTBOX_DIR_NAME: Final = "status-outbox"
_PENDING_SUFFIX: Final = ".status.json"
_REJECTED_SUFFIX: Final = ".rejected.json"
_CORRUPT_SUFFIX: Final = ".corrupt"
_TEMP_PREFIX: Final = ".tmp-"
_FORMAT_VERSION: Final = 1


class StatusSender(Protocol):
    """What the outbox needs of the client (``OrchestratorClient`` satisfies it)."""

    async def post_status(
        self,
        buffer_job_id: str,
        body: Mapping[str, Any],
        *,
        stop: asyncio.Event | None = None,
        max_attempts: int | None = None,
    ) -> StatusOutcome: ...


@attrs.frozen
class PendingStatus:
    """A terminal status on disk, not yet taken by the orchestrator.

    Attributes:
        written_ns: when it was put (wall clock, ns): the order of delivery.
        path: its file.
    """

    buffer_job_id: str
    body: Mapping[str, Any] = attrs.field(repr=False)
    written_ns: int
    path: Path


class StatusOutbox:
    """Terminal statuses kept on disk until the orchestrator has them.

    Args:
        state_dir: ``STATE_DIR``; the outbox lives in its ``status-outbox`` folder (created).
    """

    def __init__(self, state_dir: Path | str) -> None:
        self._dir = Path(state_dir) / OUTBOX_DIR_NAME
        if self._dir.exists() and not self._dir.is_dir():
            _move_folder_aside(self._dir, "it is not a folder")
        self._dir.mkdir(parents=True, exist_ok=True)
        self._sending = asyncio.Lock()  # one send at a time: no entry goes out twice
        remove_temp_files(self._dir, _TEMP_PREFIX)  # puts that crashed before os.replace

    @property
    def directory(self) -> Path:
        return self._dir

    def put(self, buffer_job_id: str, body: Mapping[str, Any]) -> PendingStatus:
        """Write ``body`` durably; when this returns, the status survives a crash.

        A second put for the same job replaces the first (one terminal status per job).

        Raises:
            ValueError: ``buffer_job_id`` is not a contract id, or ``body`` is not JSON.
        """
        if not is_job_id(buffer_job_id):
            raise ValueError(
                "buffer_job_id must be 1 to 128 letters, digits, '.', '_' or '-' starting with a letter "
                f"or digit, got {buffer_job_id!r}"
            )
        payload = dict(body)
        written_ns = time.time_ns()
        record = {"version": _FORMAT_VERSION, "buffer_job_id": buffer_job_id, "written_ns": written_ns}
        try:
            data = json.dumps({**record, "body": payload}, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as error:
            raise ValueError(f"the status body of buffer job {buffer_job_id} is not JSON: {error}") from None
        path = self._dir / f"{buffer_job_id}{_PENDING_SUFFIX}"
        write_atomically(path, data, temp_prefix=_TEMP_PREFIX)
        return PendingStatus(buffer_job_id, payload, written_ns, path)

    def holds(self, buffer_job_id: str) -> bool:
        """Whether a terminal status of ``buffer_job_id`` is here, to send or set aside as rejected."""
        if not is_job_id(buffer_job_id):
            return False
        return any(
            (self._dir / f"{buffer_job_id}{suffix}").exists()
            for suffix in (_PENDING_SUFFIX, _REJECTED_SUFFIX)
        )

    def pending(self) -> list[PendingStatus]:
        """The statuses still to send, oldest first. A file that is not a readable entry (not
        a regular file, not strict JSON, an id that is not a contract id or not its name's) is
        set aside (``*.corrupt``) and logged rather than blocking the others."""
        entries = []
        for path in self._dir.glob(f"*{_PENDING_SUFFIX}"):
            entry = self._read(path)
            if entry is not None:
                entries.append(entry)
        return sorted(entries, key=lambda entry: (entry.written_ns, entry.buffer_job_id))

    async def deliver(
        self,
        client: StatusSender,
        buffer_job_id: str,
        body: Mapping[str, Any],
        *,
        stop: asyncio.Event | None = None,
    ) -> StatusOutcome:
        """``put`` then ``send``: the way to end a job."""
        return await self.send(client, self.put(buffer_job_id, body), stop=stop)

    async def send(
        self,
        client: StatusSender,
        entry: PendingStatus,
        *,
        stop: asyncio.Event | None = None,
        max_attempts: int | None = None,
    ) -> StatusOutcome:
        """Send one entry until the orchestrator takes it; remove it at once when it does.

        Raises:
            DeliveryInterrupted: ``stop`` was set while retrying; the entry stays on disk.
            OrchestratorError: ``max_attempts`` tries failed; the entry stays on disk.
        """
        async with self._sending:
            if not entry.path.exists():
                # Taken by a concurrent send (flush and deliver raced): it has its outcome.
                return StatusOutcome.RECORDED
            outcome = await client.post_status(
                entry.buffer_job_id, entry.body, stop=stop, max_attempts=max_attempts
            )
            if outcome is StatusOutcome.REJECTED:
                _set_aside(entry.path, _REJECTED_SUFFIX)
            else:
                _remove_durably(entry.path)
        if outcome is StatusOutcome.GONE:
            log.warning(
                "status %s of buffer job %s: the job is no longer ours (404/409)",
                entry.body.get("status"),
                entry.buffer_job_id,
            )
        elif outcome is StatusOutcome.REJECTED:
            log.error(
                "status of buffer job %s refused by the orchestrator; kept in %s",
                entry.buffer_job_id,
                self._dir,
            )
        return outcome

    def discard(self, entry: PendingStatus) -> None:
        """Remove an entry unsent: its job turned out not to be this worker's (404/409)."""
        _remove_durably(entry.path)

    async def flush(
        self, client: StatusSender, *, stop: asyncio.Event | None = None
    ) -> dict[str, StatusOutcome]:
        """Send every pending status, oldest first (call it at start, before claiming).

        Raises:
            DeliveryInterrupted: ``stop`` was set; what was not sent stays on disk.
        """
        outcomes = {}
        for entry in self.pending():
            outcomes[entry.buffer_job_id] = await self.send(client, entry, stop=stop)
        return outcomes

    def _read(self, path: Path) -> PendingStatus | None:
        try:
            entry = _entry(path, read_json_file(path))
        except FileNotFoundError:
            return None  # removed by a concurrent send
        except (OSError, ValueError) as error:
            log.error(
                "outbox file %s is unreadable (%s); set aside as %s: its status is not sent",
                path.name,
                why_unreadable(error),
                _CORRUPT_SUFFIX,
            )
            _set_aside_quietly(path, _CORRUPT_SUFFIX)
            return None
        return entry


def _entry(path: Path, record: object) -> PendingStatus:
    """The entry ``record`` describes, checked: what ``put`` writes and nothing else.

    Raises:
        ValueError: saying which field is wrong.
    """
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
    buffer_job_id, body, written_ns = (record.get(k) for k in ("buffer_job_id", "body", "written_ns"))
    if not is_job_id(buffer_job_id):
        raise ValueError("its buffer_job_id is not a contract id")
    if path.name != f"{buffer_job_id}{_PENDING_SUFFIX}":
        raise ValueError("its buffer_job_id is not the one its name says")
    if not isinstance(body, dict):
        raise ValueError("its body is not an object")
    if not isinstance(written_ns, int) or isinstance(written_ns, bool):
        raise ValueError("its written_ns is not an integer")
    return PendingStatus(buffer_job_id=buffer_job_id, body=body, written_ns=written_ns, path=path)


def _remove_durably(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_directory(path.parent)


def _set_aside(path: Path, suffix: str) -> None:
    path.replace(path.with_name(path.name.removesuffix(_PENDING_SUFFIX) + suffix))
    fsync_directory(path.parent)


def _set_aside_quietly(path: Path, suffix: str) -> None:
    """``_set_aside``, for an entry that is unreadable anyway: a failure (a folder where the
    target is a file, a read-only disk) is logged, the entry skipped, nothing raised."""
    try:
        _set_aside(path, suffix)
    except OSError as error:
        log.error(
            "could not set outbox file %s aside (%s): skipped, it stays where it is",
            path.name,
            error.strerror or type(error).__name__,
        )


def _move_folder_aside(folder: Path, why: str) -> None:
    """Whatever is at the outbox's own path and is not a folder: kept, under another name.

    Raises:
        OSError: it cannot be moved (``STATE_DIR`` is read-only): the caller cannot start.
    """
    aside = folder.with_name(f"{OUTBOX_DIR_NAME}.unreadable-{time.time_ns()}")
    log.error("status outbox %s cannot be used (%s); moved aside as %s", folder, why, aside.name)
    folder.replace(aside)
    fsync_directory(folder.parent)
