"""Writing files so that a crash or a power cut leaves either the old file or the new one.

The outbox (terminal statuses that must never be lost) and the local result store both rely
on it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["fsync_directory", "write_atomically", "write_temp"]


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
