"""``fastwan-generate``: one job through the core use case, on this machine, into one file.

The composition root of the CLI: the real generator, image loader and encoder, the local
store writing next to ``--out``, and a progress bar in place of the orchestrator.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fastwan_adapters.clock import MonotonicClock
from fastwan_adapters.config import ConfigError
from fastwan_adapters.encoder import EncoderSettings, build_encoder
from fastwan_adapters.generator import (
    DiffusersGenerator,
    GeneratorSettings,
    ModelDownloadFailed,
    ModelUnavailableError,
    NoGpuError,
)
from fastwan_adapters.images import HttpImageLoader, ImageLoaderSettings
from fastwan_adapters.logs import configure_logging, secrets_in
from fastwan_adapters.storage import LocalResultStore
from fastwan_core import (
    GenerateVideo,
    JobValidationError,
    WorkerInfo,
    __version__,
    is_job_id,
    parse_job,
    result_to_wire,
)
from generate_cli.arguments import job_payload, parser
from generate_cli.progress_bar import ProgressBar

log = logging.getLogger("fastwan.generate")

EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    env = os.environ
    configure_logging(env.get("LOG_FORMAT", "console"), env.get("LOG_LEVEL", "warning"), secrets_in(env))
    out: Path = args.out.expanduser().resolve()
    # The stem is the job id and the file its output: the whole name must be a job id.
    if out.suffix != ".mp4" or not is_job_id(out.name):
        print(
            f"--out must name a .mp4 file of letters, digits, '.', '_' or '-', got {str(args.out)!r}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        payload = job_payload(args, job_id=out.stem)
        job = parse_job(payload)
        settings = GeneratorSettings.from_env(os.environ)
        encoder = build_encoder(EncoderSettings.from_env(os.environ))
        images = HttpImageLoader(ImageLoaderSettings.from_env(os.environ))
        store = LocalResultStore(out.parent)
    except JobValidationError as error:
        print(f"invalid job: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, OSError) as error:
        print(str(error), file=sys.stderr)
        return EXIT_USAGE

    print(f"loading {settings.model} ...", file=sys.stderr)
    try:
        generator = DiffusersGenerator.load(settings)
    except (ConfigError, NoGpuError, ModelUnavailableError, ModelDownloadFailed) as error:
        print(str(error), file=sys.stderr)
        # The Hub kept failing: the same command may work later; anything else is the caller's to fix.
        return EXIT_FAILED if isinstance(error, ModelDownloadFailed) else EXIT_USAGE
    bar = ProgressBar(enabled=not args.no_progress)
    try:
        usecase = GenerateVideo(
            images,
            generator,
            encoder,
            store,
            bar,
            MonotonicClock(),
            WorkerInfo("cli", __version__),
            0.2,
        )
        result = usecase.run(job)
    finally:
        bar.close()
        generator.close()
    if args.json:
        print(json.dumps(result_to_wire(result), indent=2))
    if not result.succeeded:
        print(
            f"failed ({result.error_code.value if result.error_code else '?'}): {result.error}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    metrics = result.metrics
    assert metrics is not None
    print(
        f"wrote {out} ({metrics.output_size}, {metrics.num_frames} frames, {metrics.size_bytes} bytes)"
        f" in {metrics.duration_sec:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
