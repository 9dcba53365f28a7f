"""fastwan_core: the FastWan worker's domain, shared with the services that talk to it.

The public API, all importable from here:

- :class:`Job` and :class:`JobValidationError`: the orchestrator's job, always valid;
  :class:`Size`, :class:`ImageSource`, :func:`is_job_id`: the values beneath it.
- The contract's JSON (:mod:`fastwan_core.wire`): :func:`parse_job`, :func:`job_to_wire`,
  :func:`result_to_wire`, :func:`result_from_wire`, :func:`progress_to_wire`,
  :func:`job_json_schema`.
- :func:`plan_generation` and :class:`GenerationPlan`: what the model is asked to do.
- :class:`JobLifecycle`, :class:`JobState`, :class:`Stage`: the job's life cycle and where it is
  (every other name for that, :class:`Phase` the contract's, derived from :class:`Stage`).
- :class:`JobResult`, :class:`Metrics`, :class:`Timings`, :class:`ProgressUpdate`,
  :class:`ErrorCode`, :class:`JobFailure`: what a job produces and how it fails.
- :mod:`fastwan_core.ports`: the Protocols adapters implement.
- :class:`GenerateVideo`: the use case that runs a job through the ports (and refuses a
  bad one, ``GenerateVideo.refuse``);
  :class:`Cancellation` stops it between steps, with the reason it is reported with
  (:data:`SHUTDOWN_MESSAGE`: the one error of a job the leaving worker ended).
- :mod:`fastwan_core.testing`: a fake for every port.
"""

from __future__ import annotations

from fastwan_core.cancellation import SHUTDOWN_MESSAGE, Cancellation
from fastwan_core.errors import ErrorCode, JobCancelled, JobFailure, JobValidationError
from fastwan_core.job import Job
from fastwan_core.lifecycle import IllegalTransition, JobLifecycle, JobState, Phase, Stage
from fastwan_core.plan import FASTWAN_TIMESTEPS, GenerationPlan, plan_generation
from fastwan_core.ports import EncodedVideo, GeneratedVideo
from fastwan_core.results import JobResult, Metrics, ProgressUpdate, Timings
from fastwan_core.usecase import GenerateVideo
from fastwan_core.values import ImageSource, Size, WorkerInfo, is_job_id
from fastwan_core.wire import (
    job_json_schema,
    job_to_wire,
    parse_job,
    progress_to_wire,
    result_from_wire,
    result_to_wire,
)

__version__ = "0.1.0"

__all__ = [
    "FASTWAN_TIMESTEPS",
    "SHUTDOWN_MESSAGE",
    "Cancellation",
    "EncodedVideo",
    "ErrorCode",
    "GenerateVideo",
    "GeneratedVideo",
    "GenerationPlan",
    "IllegalTransition",
    "ImageSource",
    "Job",
    "JobCancelled",
    "JobFailure",
    "JobResult",
    "JobLifecycle",
    "JobState",
    "JobValidationError",
    "Metrics",
    "Phase",
    "ProgressUpdate",
    "Stage",
    "Size",
    "Timings",
    "WorkerInfo",
    "__version__",
    "is_job_id",
    "job_json_schema",
    "job_to_wire",
    "parse_job",
    "plan_generation",
    "progress_to_wire",
    "result_from_wire",
    "result_to_wire",
]
