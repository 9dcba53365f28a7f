"""Writing files so that a crash or a power cut leaves either the old file or the new one.

The outbox (terminal statuses that must never be lost) and the local result store both rely
on it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["fsync_directory", "write_atomically"]


def write_atomically(
    path: Path, data: bytes, *, temp_prefix: str | None = None, mode: int | None = None
) -> None:
    """Temp file in the same folder, fsync, ``os.replace``, fsync the folder.

    Same folder, because ``os.replace`` is atomic only within one filesystem; the folder's
    fsync makes the rename itself survive a power cut, not just the bytes. ``temp_prefix``
    lets a caller find and clear temp files a crash left behind.
    """
    fd, temp = tempfile.mkstemp(prefix=temp_prefix or f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            if mode is not None:
                os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


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
