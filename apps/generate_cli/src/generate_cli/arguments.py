"""The command line, translated into the orchestrator's job: the CLI runs the same job as the workers."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any, Final

from fastwan_adapters.durable import UnreadableRecord, read_regular_file
from fastwan_core.values import MAX_IMAGE_BASE64_CHARS

__all__ = ["MAX_IMAGE_BYTES", "ImageFileError", "job_payload", "parser"]

#: The largest first frame a job can carry inline: its base64 must fit the core's limit.
MAX_IMAGE_BYTES: Final = MAX_IMAGE_BASE64_CHARS // 4 * 3


class ImageFileError(ValueError):
    """``--image`` names something that is not a usable image file; the message says why."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastwan-generate",
        description="Generate one video with FastWan 2.2 and write it as an MP4. "
        "FASTWAN_MODEL=tiny runs a tiny random-weight model on the CPU (its output is noise).",
    )
    p.add_argument("--prompt", required=True, help="what the video shows (1..2000 characters)")
    p.add_argument("--negative-prompt", help="what it should not show")
    p.add_argument("--image", metavar="PATH_OR_URL", help="the first frame: a local file or an http(s) URL")
    p.add_argument("--width", type=int, default=720, help="output width in pixels, 256..1280 (default 720)")
    p.add_argument(
        "--height", type=int, default=1280, help="output height in pixels, 256..1280 (default 1280)"
    )
    p.add_argument("--num-frames", type=int, default=121, help="4k+1 frames, 5..121 (default 121)")
    p.add_argument("--fps", type=int, default=24, help="frames per second of the video (default 24)")
    p.add_argument("--seed", type=int, default=42, help="same seed, same video (default 42)")
    p.add_argument(
        "--out", type=Path, default=Path("out.mp4"), help="where to write the MP4 (default out.mp4)"
    )
    p.add_argument("--json", action="store_true", help="print the result (status, metrics) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def job_payload(args: argparse.Namespace, job_id: str) -> dict[str, Any]:
    """The wire job for these arguments; the core validates it like any other.

    Raises:
        ImageFileError: the ``--image`` path is not a regular file, or too large for a job.
        OSError: the ``--image`` file cannot be read.
    """
    payload: dict[str, Any] = {
        "musetalk_job_id": job_id,
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "width": args.width,
        "height": args.height,
        "num_frames": args.num_frames,
        "fps": args.fps,
        "seed": args.seed,
    }
    if args.image:
        if args.image.startswith(("http://", "https://")):
            payload["image_url"] = args.image
        else:
            payload["image_base64"] = base64.b64encode(_read_image(Path(args.image).expanduser())).decode()
    return payload


def _read_image(path: Path) -> bytes:
    """The file's bytes, no more than a job may carry: ``/dev/zero`` would be read without end
    and a FIFO waited on for ever.

    Raises:
        ImageFileError: naming ``--image``: not a regular file, or larger than a job allows.
        OSError: it cannot be opened (not there, not readable).
    """
    try:
        return read_regular_file(path, max_bytes=MAX_IMAGE_BYTES)
    except UnreadableRecord as error:
        raise ImageFileError(f"--image {str(path)!r} cannot be used: {error}") from None
