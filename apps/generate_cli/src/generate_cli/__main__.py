"""``fastwan-generate``: one job through the core use case, on this machine, into one file.

The composition root of the CLI: the real generator, image loader and encoder, the local
store writing next to ``--out``, and a progress bar in place of the orchestrator.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from fastwan_adapters.clock import MonotonicClock
from fastwan_adapters.config import ConfigError
from fastwan_adapters.durable import check_writable_folder
from fastwan_adapters.encoder import EncoderSettings, build_encoder
from fastwan_adapters.generator import (
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
from generate_cli.arguments import ImageFileError, job_payload, parser
from generate_cli.output import Output
from generate_cli.progress_bar import ProgressBar

log = logging.getLogger("fastwan.generate")

EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    env = os.environ
    log_format = env.get("LOG_FORMAT", "console")
    configure_logging(log_format, env.get("LOG_LEVEL", "warning"), secrets_in(env))
    output = Output(json_logs=log_format.strip().lower() == "json")
    out: Path = args.out.expanduser().resolve()
    if (problem := _out_problem(out, given=str(args.out))) is not None:
        output.problem(problem)
        return EXIT_USAGE
    try:
        payload = job_payload(args, job_id=out.stem)
        job = parse_job(payload)
        settings = GeneratorSettings.from_env(os.environ)
        encoder = build_encoder(EncoderSettings.from_env(os.environ))
        images = HttpImageLoader(ImageLoaderSettings.from_env(os.environ))
        store = LocalResultStore(out.parent, named="the folder of --out")
    except JobValidationError as error:
        output.problem(f"invalid job: {error}")
        return EXIT_USAGE
    except (ConfigError, ImageFileError, OSError) as error:
        output.problem(str(error))
        return EXIT_USAGE

    output.say(f"loading {settings.model} ...")
    # Imported once the logs are configured: diffusers and transformers log as they load.
    from fastwan_adapters.generator.diffusers_generator import DiffusersGenerator

    try:
        generator = DiffusersGenerator.load(settings)
    except (ConfigError, NoGpuError, ModelUnavailableError, ModelDownloadFailed) as error:
        output.problem(str(error))
        # The Hub kept failing: the same command may work later; anything else is the caller's to fix.
        return EXIT_FAILED if isinstance(error, ModelDownloadFailed) else EXIT_USAGE
    bar = ProgressBar(enabled=output.progress_bar and not args.no_progress)
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
        output.result(result_to_wire(result))
    if not result.succeeded:
        output.problem(f"failed ({result.error_code.value if result.error_code else '?'}): {result.error}")
        return EXIT_FAILED
    metrics = result.metrics
    assert metrics is not None
    output.done(
        f"wrote {out} ({metrics.output_size}, {metrics.num_frames} frames, {metrics.size_bytes} bytes)"
        f" in {metrics.duration_sec:.1f} s"
    )
    return 0


def _out_problem(out: Path, *, given: str) -> str | None:
    """What is wrong with ``--out``, found before the model loads (minutes), not after the
    generation: its name, or a folder it cannot be written to."""
    # The stem is the job id and the file its output: the whole name must be a job id.
    if out.suffix != ".mp4" or not is_job_id(out.name):
        return f"--out must name a .mp4 file of letters, digits, '.', '_' or '-', got {given!r}"
    try:
        check_writable_folder(out.parent)
    except OSError as error:
        return f"--out {given!r}: its folder cannot be written: {error.strerror or error}"
    return None


if __name__ == "__main__":
    raise SystemExit(main())
