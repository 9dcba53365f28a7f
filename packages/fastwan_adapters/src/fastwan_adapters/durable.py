"""Writing files so that a crash or a power cut leaves either the old file or the new one, and
reading them back without trusting what is there.

The outbox (terminal statuses that must never be lost) and the local result store both rely
on it. What the outbox and the claim journal read back at start may be anything a crash, a
person or another program left in ``STATE_DIR``: a FIFO (an ordinary ``open`` would wait for a
writer forever), a folder, a huge file, ``NaN``. ``read_json_file`` refuses each with a reason
instead of hanging or raising something the caller does not expect.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Final

__all__ = [
    "MAX_RECORD_BYTES",
    "UnreadableRecord",
    "check_writable_folder",
    "fsync_directory",
    "read_json_file",
    "read_regular_file",
    "remove_temp_files",
    "why_unreadable",
    "write_atomically",
    "write_temp",
]

log = logging.getLogger(__name__)

#: The largest state record read back: a terminal status or a claim is a few KiB at most.
MAX_RECORD_BYTES: Final = 1 << 20


class UnreadableRecord(ValueError):
    """A state file that is there but cannot be taken as a record; the message says why."""


def write_atomically(
    path: Path, data: bytes, *, temp_prefix: str | None = None, mode: int | None = None
) -> None:
    """Temp file in the same folder, fsync, ``os.replace``, fsync the folder.

    Same folder, because ``os.replace`` is atomic only within one filesystem; the folder's
    fsync makes the rename itself survive a power cut, not just the bytes. ``temp_prefix``
    lets a caller find and clear temp files a crash left behind.
    """
    temp = write_temp(path, data, temp_prefix=temp_prefix, mode=mode)
    try:
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_temp(path: Path, data: bytes, *, temp_prefix: str | None = None, mode: int | None = None) -> Path:
    """The first half of :func:`write_atomically`: ``data`` in a temp file beside ``path``, on
    disk, not yet renamed. For a caller that puts several files in place only once all are
    written (a full disk fails here, before any final name changes); it renames, or unlinks.
    """
    fd, temp = tempfile.mkstemp(prefix=temp_prefix or f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            if mode is not None:
                os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return Path(temp)


def fsync_directory(directory: Path) -> None:
    """Make a rename or removal in ``directory`` durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable_folder(directory: Path) -> None:
    """Create ``directory`` if missing, then create and remove a file in it: the one check that
    also holds for root, whom permission bits do not stop but a read-only mount does.

    Raises:
        OSError: it cannot be created, is not a folder, or cannot be written.
    """
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder", str(directory))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
    except OSError as error:  # named for the folder, not for the probe's random name
        raise OSError(error.errno, error.strerror, str(directory)) from None
    os.close(fd)
    Path(probe).unlink()


def remove_temp_files(directory: Path, prefix: str) -> None:
    """Remove the temp files (``prefix*``) of writes a crash cut short: they never returned, so
    nothing relies on them. What cannot be removed (a folder of that name) is logged and left."""
    for leftover in directory.glob(f"{prefix}*"):
        try:
            leftover.unlink(missing_ok=True)
        except OSError as error:
            log.error("could not remove %s: %s; left as it is", leftover, why_unreadable(error))


def read_json_file(path: Path, *, max_bytes: int = MAX_RECORD_BYTES) -> object:
    """The JSON value in ``path``, read without blocking and parsed strictly.

    Raises:
        FileNotFoundError: it is gone (removed meanwhile).
        UnreadableRecord: not a regular file (a link to nothing included), larger than
            ``max_bytes``, not UTF-8, not JSON, nested too deep, or holding ``NaN``/``Infinity``
            (which Python's ``json`` accepts and the contract's JSON does not).
        OSError: it could not be opened or read.
    """
    data = read_regular_file(path, max_bytes=max_bytes)
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise UnreadableRecord("its JSON is nested too deep") from None
    except UnreadableRecord:
        raise
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise UnreadableRecord(f"it is not JSON ({error})") from None


def read_regular_file(path: Path, *, max_bytes: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``max_bytes``, read without blocking:
    a FIFO, a device (``/dev/zero``, a terminal) or a folder is refused, never waited on or
    read without end.

    Raises:
        FileNotFoundError: it is not there.
        UnreadableRecord: not a regular file (a link to nothing included), or larger than
            ``max_bytes``; the message completes "... cannot be read: ".
        OSError: it could not be opened or read.
    """
    # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer; fstat then
    # refuses it. A regular file ignores the flag.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise UnreadableRecord("it is a link to nothing") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableRecord(f"it is {_kind(mode)}, not a regular file")
        data = os.read(fd, max_bytes + 1)
        while len(data) <= max_bytes and (more := os.read(fd, max_bytes + 1 - len(data))):
            data += more
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UnreadableRecord(f"it is larger than {max_bytes} bytes")
    return data


def why_unreadable(error: Exception) -> str:
    """What a log line says of an ``OSError`` or ``ValueError`` from reading a record."""
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return str(error)[:200]


def _refuse_constant(name: str) -> object:
    raise UnreadableRecord(f"it holds {name}, which is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: a literal too large for a float
        raise UnreadableRecord(f"it holds {text[:32]}, which is not a finite number")
    return value


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")
