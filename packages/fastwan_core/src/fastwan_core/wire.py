"""The one cattrs converter that maps the core's values to and from the contract's JSON.

Jobs keep every field on the wire (the orchestrator's shape); results, metrics and progress
leave out what does not apply. Sizes travel as ``[w, h]``, enums as their values.

The orchestrator already parses its sibling worker's answers (MuseTalk's
``WORKER_ERROR_REPORTING_SPEC.md``); the names it reads are added here, beside ours and derived
from them, so the two sets can never disagree: ``musetalk_job_id`` (= the result's job id),
``metrics.total_time`` (= ``duration_sec``) and ``metrics.stage_times`` (= ``timings``), and on
a failure ``error_message`` (= ``error``), ``error_type``, ``stage`` and ``stage_times``.
Reading back ignores the derived names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from fastwan_core.job import Size
from fastwan_core.results import JobResult, Metrics, ProgressUpdate, Timings, error_type_of

__all__ = ["converter"]

_Unstructure = Callable[[Any], dict[str, Any]]


def _metrics_hook(base: _Unstructure) -> _Unstructure:
    def unstructure(metrics: Metrics) -> dict[str, Any]:
        wire = base(metrics)
        wire["total_time"] = metrics.duration_sec
        wire["stage_times"] = metrics.timings.stage_times()
        return wire

    return unstructure


def _result_hook(base: _Unstructure) -> _Unstructure:
    def unstructure(result: JobResult) -> dict[str, Any]:
        wire = base(result)
        if result.job_id is not None:
            wire["musetalk_job_id"] = result.job_id
        if not result.succeeded:
            if result.error is not None:
                wire["error_message"] = result.error
            wire["error_type"] = error_type_of(result.error_code)
            wire["stage"] = result.failure_stage
            wire["stage_times"] = result.metrics.timings.stage_times() if result.metrics else {}
        return wire

    return unstructure


def _make() -> cattrs.Converter:
    conv = make_converter()
    conv.register_unstructure_hook(Size, Size.as_list)
    conv.register_structure_hook(Size, lambda value, _: Size(int(value[0]), int(value[1])))
    # Inner values first: a generated hook binds the hooks of its fields when it is made.
    conv.register_unstructure_hook(
        Timings, make_dict_unstructure_fn(Timings, conv, _cattrs_omit_if_default=True)
    )
    conv.register_unstructure_hook(
        Metrics, _metrics_hook(make_dict_unstructure_fn(Metrics, conv, _cattrs_omit_if_default=True))
    )
    conv.register_unstructure_hook(
        ProgressUpdate, make_dict_unstructure_fn(ProgressUpdate, conv, _cattrs_omit_if_default=True)
    )
    conv.register_unstructure_hook(
        JobResult,
        _result_hook(
            make_dict_unstructure_fn(
                JobResult,
                conv,
                _cattrs_omit_if_default=True,
                job_id=override(omit=True),
                stage=override(omit=True),
                fatal=override(omit=True),
            )
        ),
    )
    conv.register_structure_hook(
        JobResult,
        make_dict_structure_fn(
            JobResult, conv, job_id=override(rename="musetalk_job_id"), fatal=override(omit=True)
        ),
    )
    return conv


converter: Final[Any] = _make()
