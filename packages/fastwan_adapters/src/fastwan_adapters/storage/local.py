"""A result store on local disk: the default when no B2 credentials are given.

It lets the worker run end to end on a laptop or in CI with nothing to sign up for, and lets
the queue worker serve the folder over HTTP (``base_url``). Writes are atomic, so a reader (or
a crash) never sees half a video under the final name: re-running a job replaces the file in
one step. The video and its sidecar are both written to temporary files before either is put
in place, sidecar first, so that a full disk changes nothing and a video always has its sidecar.
A write that fails is tried again a few times within a bound (``storage.retry``, as B2's upload
is): a disk unusable for a moment must not fail the job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import quote

import attrs

from fastwan_adapters.config import ConfigError, env_str
from fastwan_adapters.durable import check_writable_folder, fsync_directory, write_temp
from fastwan_adapters.storage.names import checked_name
from fastwan_adapters.storage.retry import UploadRetry
from fastwan_core import EncodedVideo, ErrorCode, JobFailure

__all__ = ["DEFAULT_OUTPUT_DIR", "LocalResultStore", "LocalStoreSettings"]

DEFAULT_OUTPUT_DIR: Final = "./outputs"
#: mkstemp creates files readable by their owner only; outputs are meant to be shared.
_FILE_MODE: Final = 0o644


@attrs.frozen
class LocalStoreSettings:
    """Where the local store writes, read from the environment; reading touches no disk.

    Attributes:
        directory: ``OUTPUT_DIR`` (default ``./outputs``), made absolute.
        base_url: where the folder is served over HTTP (the queue worker's ``/outputs``), if it is.
    """

    directory: Path = attrs.field(converter=Path)
    base_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, base_url: str | None = None) -> LocalStoreSettings:
        raw = env_str(env, "OUTPUT_DIR", DEFAULT_OUTPUT_DIR) or DEFAULT_OUTPUT_DIR
        return cls(Path(raw).expanduser().resolve(), base_url=base_url)

    def create_directory(self) -> None:
        """Create ``OUTPUT_DIR`` if missing and check it can be written: a bad path stops start-up.

        Raises:
            ConfigError: naming ``OUTPUT_DIR``.
        """
        directory = self.directory
        try:
            check_writable_folder(directory)  # by writing: a read-only mount stops root too
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(f"OUTPUT_DIR {str(directory)!r} cannot be written: {reason}") from None


@attrs.frozen
class LocalResultStore:
    """Writes each video to ``directory/name`` and a ``name.json`` sidecar with its metadata.

    Attributes:
        directory: where outputs go; created on first use if missing.
        base_url: when set, URLs are ``base_url/name`` (the folder is served over HTTP);
            otherwise they are ``file://`` URLs of the written file.
        named: what chose ``directory``, for messages: ``OUTPUT_DIR``, or the CLI's ``--out``.
        retry: how a failed write is tried again.
    """

    directory: Path = attrs.field(converter=Path)
    base_url: str | None = None
    named: str = "OUTPUT_DIR"
    retry: UploadRetry = attrs.field(factory=UploadRetry)

    @classmethod
    def open(cls, settings: LocalStoreSettings) -> LocalResultStore:
        """The store on ``settings.directory``, created now so a bad path stops start-up."""
        settings.create_directory()
        return cls(settings.directory, base_url=settings.base_url)

    def put(self, name: str, video: EncodedVideo, metadata: Mapping[str, str]) -> str:
        name = checked_name(name)
        sidecar = {
            **metadata,
            "content_type": video.content_type,
            "sha1": video.sha1,
            "size_bytes": str(video.size_bytes),
        }
        sidecar_json = json.dumps(sidecar, indent=2, sort_keys=True).encode()
        self.retry.run(
            lambda: self._write(name, video.data, sidecar_json),
            transient=lambda error: isinstance(error, JobFailure),  # any OSError: it may pass
            what=f"writing {name}",
        )
        return self.url_for(name)

    def _write(self, name: str, data: bytes, sidecar_json: bytes) -> None:
        """One try: both files written in full before either final name changes (a full disk
        fails here), then the sidecar put in place first: a video is never there without it."""
        video_path, sidecar_path = self.directory / name, self.directory / f"{name}.json"
        staged: dict[Path, Path] = {}  # final path -> its temp file, until renamed
        failing = name
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            staged[video_path] = write_temp(video_path, data, mode=_FILE_MODE)
            failing = sidecar_path.name
            staged[sidecar_path] = write_temp(sidecar_path, sidecar_json, mode=_FILE_MODE)
            for final in (sidecar_path, video_path):
                failing = final.name
                staged[final].replace(final)
                del staged[final]
            fsync_directory(self.directory)
        except OSError as exc:
            raise JobFailure(
                ErrorCode.UPLOAD_FAILED,
                f"could not write {failing} to {self.named} {str(self.directory)!r}: {exc.strerror or exc}",
            ) from exc
        finally:
            for temp in staged.values():
                temp.unlink(missing_ok=True)

    def discard_partial(self, name: str, *, older_than: float | None = None) -> list[Path]:
        """Remove the temporary files a write of ``name`` killed mid-way left (never the
        finished file: a complete video is replaced in one step when the job runs again).

        Args:
            older_than: only those last written before this ``time.time()``: the folder may be
                shared (the supervisor's workers share ``OUTPUT_DIR``), and another worker may be
                writing the same name right now, its job having been handed to it again.
        """
        name = checked_name(name)
        # write_atomically's temp names: ".{name}." or ".{name}.json.", mkstemp's 8 characters, ".tmp"
        pattern = re.compile(rf"\.{re.escape(name)}(?:\.json)?\.[A-Za-z0-9_]{{8}}\.tmp")
        removed = []
        for path in self.directory.glob(f".{name}.*.tmp"):
            if pattern.fullmatch(path.name) and (older_than is None or _written_before(path, older_than)):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def url_for(self, name: str) -> str:
        """The URL ``put`` returns for ``name``."""
        if self.base_url is not None:
            return f"{self.base_url.rstrip('/')}/{quote(name)}"
        return (self.directory / name).absolute().as_uri()


def _written_before(path: Path, moment: float) -> bool:
    try:
        return path.stat().st_mtime < moment
    except FileNotFoundError:  # renamed in place meanwhile: nothing to remove
        return False
