"""``GET /outputs/{name}``: the finished videos in ``OUTPUT_DIR``, and nothing else there.

The local store writes each video to a hidden temporary file (``.{name}.XXXXXXXX.tmp``) and
renames it when it is whole, beside a ``{name}.json`` sidecar; the folder may hold anything
else an operator put in it. Only a regular file named ``*.mp4``, not hidden, directly in the
folder, is a finished video: temporary files (in-flight or left by a crash), dot-files,
sidecars, symbolic links and sub-folders are answered 404 like a missing file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from starlette.staticfiles import StaticFiles

__all__ = ["FinishedVideos", "is_video_name"]

_SUFFIX = ".mp4"


def is_video_name(path: str) -> bool:
    """Whether ``path`` (as :meth:`StaticFiles.get_path` gives it) names a finished video."""
    return path.endswith(_SUFFIX) and not path.startswith(".") and not any(c in path for c in "/\\\0")


class FinishedVideos(StaticFiles):
    """Starlette's static files (ranges, ETags, HEAD), narrowed to the finished videos of one folder."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__(directory=directory)
        self._folder = Path(directory)

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if not is_video_name(path):
            return "", None
        full_path = self._folder / path
        try:
            found = full_path.lstat()  # lstat: a symbolic link is not a video we wrote
        except (FileNotFoundError, NotADirectoryError):
            return "", None
        if not stat.S_ISREG(found.st_mode):
            return "", None
        return str(full_path), found
