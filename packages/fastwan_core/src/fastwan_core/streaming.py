"""The use case's end of the streaming form: decoded chunks into one encoding session.

The session is opened on the first chunk, so a job stopped before it decodes never starts
an encoder. Whatever ends the job early (a stop between chunks, a failure on either side),
the session is aborted and nothing of the video is kept.
"""

from __future__ import annotations

from typing import Final

from fastwan_core.ports import Clock, EncodedVideo, EncodingSession, Frames, VideoEncoder
from fastwan_core.values import Size

__all__ = ["StreamedEncoding"]


class StreamedEncoding:
    """A :class:`~fastwan_core.ports.FrameSink` that feeds one session of ``encoder``.

    ``cover``: the plan's choice to scale-to-cover and centre-crop (``GenerationPlan.cover``).

    Attributes:
        started_at: the clock's time when the first chunk arrived (None before).
    """

    def __init__(
        self, encoder: VideoEncoder, size: Size, fps: int, clock: Clock, *, cover: bool = False
    ) -> None:
        self._encoder: Final = encoder
        self._size: Final = size
        self._fps: Final = fps
        self._cover: Final = cover
        self._clock: Final = clock
        self._session: EncodingSession | None = None
        self.started_at: float | None = None

    def add(self, frames: Frames) -> None:
        if self._session is None:
            self.started_at = self._clock.now()
            self._session = self._encoder.open(self._size, self._fps, cover=self._cover)
        self._session.add(frames)

    def finish(self) -> EncodedVideo:
        """The MP4 of every frame added."""
        if self._session is None:
            raise RuntimeError("the generator produced no frames for the encoder")
        return self._session.finish()

    def abort(self) -> None:
        if self._session is not None:
            self._session.abort()
