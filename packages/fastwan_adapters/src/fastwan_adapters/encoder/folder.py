"""The encoder's temporary files: one folder per worker process, locked while it runs, swept at start.

The encoder writes each MP4 to a temporary file (``+faststart`` reopens the output by name).
A worker killed mid-encode (SIGKILL, the OOM killer, a lost machine) never deletes that
partial MP4, and before this nothing else did: ``fastwan-encode-*`` piled up in ``$TMPDIR``.

So every worker process owns one folder, ``{FASTWAN_TEMP_DIR}/fastwan-encode-{uid}/worker-*``,
and holds an exclusive ``flock`` on it for as long as it lives. The kernel drops that lock
when the process ends, however it ends; so at start a worker deletes every ``worker-*``
folder it can lock, the leftovers of workers that are gone, and never one whose worker still
runs. Several workers share one machine's temp folder (a buffer worker per GPU, a CLI run
beside them) without wiping each other's files. Sweeping and claiming happen under one lock
on the root, so a folder is never swept between its creation and its owner's lock.

Permissions: the per-user root and every worker folder are ``0700``; a root that is not a
real folder of this user (a symlink or a folder planted in a shared ``/tmp``) is refused.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from fastwan_adapters.config import ConfigError

__all__ = ["EncoderFolder"]

# The logger's name as before the encoder became a package: the ``logger`` field of its log lines.
log = logging.getLogger("fastwan_adapters.encoder_folder")

_VARIABLE: Final = "FASTWAN_TEMP_DIR"
_ROOT_PREFIX: Final = "fastwan-encode-"
_WORKER_PREFIX: Final = "worker-"
_ROOT_LOCK: Final = ".lock"
_PRIVATE: Final = 0o700


class EncoderFolder:
    """This process's folder for the encoder's temporary files (``path``), locked until ``close``.

    Made with :meth:`claim`; released (the folder deleted) by ``close`` or at interpreter exit.
    A kill leaves it behind, unlocked, for the next start to sweep.
    """

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path: Final = path
        self._lock_fd: int | None = lock_fd
        atexit.register(self.close)

    @classmethod
    def claim(cls, base: Path | None = None) -> EncoderFolder:
        """A new locked folder under ``base`` (None: the system temp folder, ``TMPDIR``), after
        deleting the folders there of worker processes that are gone.

        Raises:
            ConfigError: naming ``FASTWAN_TEMP_DIR``: the folder cannot be made or used here.
        """
        base = base if base is not None else Path(tempfile.gettempdir())
        root = base / f"{_ROOT_PREFIX}{os.getuid()}"
        try:
            _make_private_root(root)
            with _locked(root / _ROOT_LOCK):
                swept = _sweep(root)
                path = Path(tempfile.mkdtemp(prefix=_WORKER_PREFIX, dir=root))  # 0700
                lock_fd = _lock_folder(path)
        except OSError as error:
            raise ConfigError(
                f"{_VARIABLE}: the encoder's temporary folder {root} cannot be used "
                f"({type(error).__name__}: {error}); set {_VARIABLE} to a writable local folder"
            ) from None
        if swept:
            log.info("encoder: deleted %d leftover temporary file(s) of stopped workers in %s", swept, root)
        return cls(path, lock_fd)

    def close(self) -> None:
        """Delete the folder and drop the lock. Idempotent."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        atexit.unregister(self.close)
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(fd)


def _make_private_root(root: Path) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=_PRIVATE)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError(
            f"{_VARIABLE}: {root} is not a folder of this user (uid {os.getuid()}): a symlink, a "
            f"file or another user's folder; remove it or set {_VARIABLE} to a folder of this worker's own"
        )
    if stat.S_IMODE(info.st_mode) != _PRIVATE:
        root.chmod(_PRIVATE)


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """An exclusive lock on ``lock_file`` (waited for: sweeps and claims take milliseconds)."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock


def _lock_folder(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new and ours: cannot be held elsewhere
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sweep(root: Path) -> int:
    """Delete the ``worker-*`` folders in ``root`` nobody holds; the count of files they held."""
    deleted = 0
    for entry in root.iterdir():
        if not entry.name.startswith(_WORKER_PREFIX):
            continue  # not the encoder's: left alone
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue  # not a folder (or gone): the encoder makes only folders
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its worker is running
            deleted += sum(len(files) for _, _, files in os.walk(entry))
            shutil.rmtree(entry, ignore_errors=True)
        finally:
            os.close(fd)
    return deleted
