"""``STATE_DIR``, where the outbox and the claim journal live: checked at start, by writing to it.

A folder that cannot hold them is a setting to fix, so every failure here is a
:class:`ConfigError` naming ``STATE_DIR`` (exit 2), never a crash to restart into.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from fastwan_adapters.config import ConfigError
from fastwan_adapters.durable import check_writable_folder
from fastwan_adapters.orchestrator import ClaimJournal, StatusOutbox

__all__ = ["kept_in", "usable_state_dir"]

_Kept = TypeVar("_Kept", StatusOutbox, ClaimJournal)


def usable_state_dir(state_dir: Path) -> Path:
    """``state_dir``, checked by writing to it: one that cannot hold the outbox is a setting to
    fix (exit 2), not a crash to restart into."""
    try:
        check_writable_folder(state_dir)
    except OSError as error:
        raise ConfigError(_unusable(state_dir, error)) from None
    return state_dir


def kept_in(kind: type[_Kept], state_dir: Path) -> _Kept:
    """The outbox or the claim journal in ``state_dir``; a failure to open it names STATE_DIR."""
    try:
        return kind(state_dir)
    except OSError as error:
        raise ConfigError(_unusable(state_dir, error)) from None


def _unusable(state_dir: Path, error: OSError) -> str:
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(state_dir) else ""
    return (
        f"STATE_DIR {str(state_dir)!r} is not usable: {error.strerror or type(error).__name__}{where}; "
        "set STATE_DIR to a writable folder (a volume in Docker)"
    )
