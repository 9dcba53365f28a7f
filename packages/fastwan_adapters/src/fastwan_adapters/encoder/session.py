"""The encoder's streaming form: chunks of frames in, encoded in a thread of their own.

The generator's thread decodes chunk ``n + 1`` on the GPU while this session's thread
converts and encodes chunk ``n`` on the CPU (libswscale and libx264 release the GIL), so
after the last chunk only what is still queued and the codec's lookahead are left to
encode. The queue is bounded (``PyAVEncoder.queue_chunks``): a decoder faster than the
encoder waits for it rather than piling frames up in memory.

The codec is opened before the session is made (``PyAVEncoder.open``, in the caller's
thread), so a codec that cannot open fails there and the caller can choose another; the
writer is then used by the encoding thread alone until it has stopped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Final

import av
import numpy as np

from fastwan_adapters.encoder.frames import check_chunk
from fastwan_adapters.encoder.writer import Mp4Writer, encoding_failed
from fastwan_core.errors import ErrorCode, JobFailure
from fastwan_core.ports import EncodedVideo, Frames
from fastwan_core.values import Size

__all__ = ["StreamingSession"]

# The logger's name as before the encoder became a package: the ``logger`` field of its log lines.
log = logging.getLogger("fastwan_adapters.encoder_stream")

_END: Final = object()
_POLL_S: Final = 0.1


class StreamingSession:
    """One MP4 fed chunk by chunk (the core's ``EncodingSession``), to ``writer``, already open.

    ``codec`` names the writer's codec in the result; ``queue_chunks`` bounds the chunks that
    wait for the encoding thread (``PyAVEncoder.queue_chunks``).
    """

    def __init__(self, writer: Mp4Writer, target: Size, *, codec: str, queue_chunks: int) -> None:
        self._codec: Final = codec
        self._target: Final = target
        self._writer = writer
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_chunks)
        self._error: BaseException | None = None
        self._busy_s = 0.0
        self._frames = 0
        self._shape: tuple[int, ...] | None = None
        self._state = "open"
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._work, name="fastwan-encoder", daemon=True)
        self._thread.start()

    # -- the caller's side ----------------------------------------------------------------

    def add(self, frames: Frames) -> None:
        """Queue a ``(n, H, W, 3)`` uint8 chunk; waits while the queue is full.

        Raises:
            JobFailure: a bad chunk (``internal_error``, not retryable), or the encoding
                thread failed on an earlier one.
        """
        if self._state != "open":
            raise RuntimeError(f"frames added to a {self._state} encoding session")
        chunk = check_chunk(frames, self._shape)
        self._shape = chunk.shape[1:]
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(chunk, timeout=_POLL_S)
                break
            except queue.Full:
                continue
        self._frames += len(chunk)

    def finish(self) -> EncodedVideo:
        """Wait for the queued chunks, flush the codec and return the MP4."""
        if self._state != "open":
            raise RuntimeError(f"finish on a {self._state} encoding session")
        self._state = "finishing"
        try:
            self._queue.put(_END)
            self._thread.join()
            self._raise_if_failed()
            started = time.perf_counter()
            try:
                data = self._writer.finish(self._frames)
            except (av.FFmpegError, OSError) as error:
                raise encoding_failed(error) from error
            self._busy_s += time.perf_counter() - started
        finally:
            self._writer.discard()
            self._state = "finished"
        return EncodedVideo(data=data, size=self._target, encoder=self._codec, encoding_s=self._busy_s)

    def abort(self) -> None:
        """Stop at the chunk being encoded, drop everything; idempotent, never raises."""
        if self._state in ("finished", "aborted"):
            return
        self._state = "aborted"
        self._abandoned.set()
        while True:  # make room for the end marker: nothing queued will be encoded
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(_END)
        self._thread.join()
        self._writer.discard()

    def _raise_if_failed(self) -> None:
        error = self._error
        if error is None:
            return
        if isinstance(error, JobFailure):
            raise error
        if isinstance(error, av.FFmpegError | OSError):
            raise encoding_failed(error) from error
        raise JobFailure(
            ErrorCode.INTERNAL_ERROR, f"the encoder thread failed: {type(error).__name__}: {error}"
        ) from error

    # -- the encoding thread --------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END or self._abandoned.is_set():
                return
            if self._error is not None:
                continue  # failed: drain until the caller hears of it
            assert isinstance(item, np.ndarray)
            started = time.perf_counter()
            try:
                self._writer.write(item)
            except BaseException as error:  # handed to the caller's thread, never lost
                log.debug("encoding a chunk failed", exc_info=True)
                self._error = error
            self._busy_s += time.perf_counter() - started
