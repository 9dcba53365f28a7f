"""Which H.264 encoder runs: ``FASTWAN_ENCODER=auto|libx264|h264_nvenc``.

NVENC encodes on the GPU's own video engine, off the CPU that libx264 would hold for seconds
per clip on a 4-vCPU rented node. Whether a GPU has that engine is not in its name (the
consumer and most data-centre cards do; H100, H200 and A100 have none), so it is found out
the only reliable way: by opening ``h264_nvenc`` once at start-up. ``auto`` takes NVENC when
it opens and libx264 otherwise; an explicit ``h264_nvenc`` that cannot open is a start-up
error. Should NVENC later fail to open for a job (a driver's session limit, a GPU reset), the
worker switches to libx264 for good, with one warning, and the job goes on.

Both write their temporary MP4s in a folder of this worker's own (``folder``,
under ``FASTWAN_TEMP_DIR``), claimed here, at start, after the leftovers of killed workers
are deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Literal

import attrs

from fastwan_adapters.config import ConfigError, env_choice, env_str
from fastwan_adapters.encoder.folder import EncoderFolder
from fastwan_adapters.encoder.pyav import PyAVEncoder
from fastwan_adapters.encoder.writer import EncoderOpenError
from fastwan_core.ports import EncodingSession, VideoEncoder
from fastwan_core.values import Size

__all__ = ["ENCODER_CHOICES", "EncoderSettings", "FallbackEncoder", "build_encoder", "nvenc_problem"]

# The logger's name as before the encoder became a package: the ``logger`` field of its log lines.
log = logging.getLogger("fastwan_adapters.encoder_choice")

EncoderChoice = Literal["auto", "libx264", "h264_nvenc"]
ENCODER_CHOICES: Final[tuple[EncoderChoice, ...]] = ("auto", "libx264", "h264_nvenc")
_PROBE_SIZE: Final = Size(256, 256)


@attrs.frozen(kw_only=True)
class EncoderSettings:
    """Attributes:
    encoder: ``FASTWAN_ENCODER`` (default ``auto``).
    temp_dir: ``FASTWAN_TEMP_DIR``: where the worker's folder of temporary MP4s is made;
        None: the system temp folder (``TMPDIR``).
    """

    encoder: EncoderChoice = "auto"
    temp_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EncoderSettings:
        choice = env_choice(env, "FASTWAN_ENCODER", ENCODER_CHOICES, "auto") or "auto"
        temp_dir = env_str(env, "FASTWAN_TEMP_DIR")
        return cls(
            encoder=choice,  # type: ignore[arg-type]  # checked by env_choice
            temp_dir=Path(temp_dir).expanduser() if temp_dir else None,
        )


def nvenc_problem(temp_dir: Path | None = None) -> str | None:
    """None if ``h264_nvenc`` opens here (its probe file in ``temp_dir``), else why not (FFmpeg's error)."""
    try:
        PyAVEncoder(codec="h264_nvenc", temp_dir=temp_dir).writer(_PROBE_SIZE, 24).discard()
    except EncoderOpenError as error:
        return str(error)  # names the codec and FFmpeg's error type (PermissionError here)
    return None


def build_encoder(settings: EncoderSettings, probe: Callable[[], str | None] | None = None) -> VideoEncoder:
    """The encoder ``settings`` ask for, with NVENC probed once (``probe``, default
    :func:`nvenc_problem`; tests pass their own), writing in this worker's own temp folder.

    Raises:
        ConfigError: ``FASTWAN_ENCODER=h264_nvenc`` and NVENC cannot open here, or
            ``FASTWAN_TEMP_DIR`` cannot be used.
    """
    folder = EncoderFolder.claim(settings.temp_dir).path  # kept, locked, until the process ends
    libx264 = PyAVEncoder(temp_dir=folder)
    if settings.encoder == "libx264":
        log.info("encoder: libx264 (FASTWAN_ENCODER=libx264)")
        return libx264
    problem = probe() if probe is not None else nvenc_problem(folder)
    if problem is not None:
        if settings.encoder == "h264_nvenc":
            raise ConfigError(
                f"FASTWAN_ENCODER=h264_nvenc cannot be used here: {problem}; this GPU has no hardware "
                "encoder or the driver does not expose it: set FASTWAN_ENCODER=auto or libx264"
            )
        log.warning("FASTWAN_ENCODER=auto: h264_nvenc cannot open here (%s); encoding with libx264", problem)
        return libx264
    log.info("encoder: h264_nvenc (FASTWAN_ENCODER=%s), libx264 if it ever fails to open", settings.encoder)
    return FallbackEncoder(PyAVEncoder(codec="h264_nvenc", temp_dir=folder), libx264)


@attrs.define
class FallbackEncoder:
    """NVENC until it fails to open once, then libx264 for good (one warning)."""

    primary: PyAVEncoder
    fallback: PyAVEncoder
    _failed: bool = attrs.field(default=False, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    @property
    def codec(self) -> str:
        """The codec the next video gets."""
        return self.fallback.codec if self._failed else self.primary.codec

    def open(self, size: Size, fps: int, *, cover: bool = False) -> EncodingSession:
        if not self._failed:
            try:
                return self.primary.open(size, fps, cover=cover)
            except EncoderOpenError as error:
                self._fall_back(error)
        return self.fallback.open(size, fps, cover=cover)

    def _fall_back(self, error: EncoderOpenError) -> None:
        with self._lock:
            if self._failed:
                return
            self._failed = True
        log.warning("%s; encoding with %s from now on", error, self.fallback.codec)
