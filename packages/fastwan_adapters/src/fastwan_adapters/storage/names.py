"""The one rule both stores apply to the names they are given.

The core names outputs ``{musetalk_job_id}.mp4`` from an id it has already validated, so a bad
name here is a bug, not a user error; the check still runs because a name that escaped the
output folder (local) or the configured prefix (B2) would overwrite someone else's file.
"""

from __future__ import annotations

from typing import Final

from fastwan_core import ErrorCode, JobFailure

__all__ = ["MAX_NAME_CHARS", "checked_name"]

MAX_NAME_CHARS: Final = 255


def checked_name(name: str) -> str:
    """Return ``name`` if it is a single, visible path segment; else raise ``upload_failed``.

    Leading dots are refused too: the local store writes its temporary files as ``.name.*``,
    and a hidden output would be easy to miss. The failure is not retryable: the same name
    would be refused again.
    """
    problem = _problem(name)
    if problem is not None:
        shown = name if len(name) <= 64 else name[:61] + "..."
        raise JobFailure(
            ErrorCode.UPLOAD_FAILED, f"output name {shown!r} is not allowed: {problem}", retryable=False
        )
    return name


def _problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"it is longer than {MAX_NAME_CHARS} characters"
    if "/" in name or "\\" in name:
        return "it must not contain '/' or '\\'"
    if name.startswith("."):
        return "it must not start with '.' (covers '.' and '..')"
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return "it must not contain control characters"
    return None
