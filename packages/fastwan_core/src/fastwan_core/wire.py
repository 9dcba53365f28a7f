"""The one cattrs converter that maps the core's values to and from the contract's JSON.

Jobs keep every field on the wire (the orchestrator's shape); results, metrics and progress
leave out what does not apply. Sizes travel as ``[w, h]``, enums as their values.
"""

from __future__ import annotations

from typing import Any, Final

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from fastwan_core.job import Size
from fastwan_core.results import JobResult, Metrics, ProgressUpdate, Timings

__all__ = ["converter"]


def _make() -> cattrs.Converter:
    conv = make_converter()
    conv.register_unstructure_hook(Size, Size.as_list)
    conv.register_structure_hook(Size, lambda value, _: Size(int(value[0]), int(value[1])))
    for cls in (Timings, Metrics, ProgressUpdate):
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True))
    conv.register_unstructure_hook(
        JobResult,
        make_dict_unstructure_fn(
            JobResult,
            conv,
            _cattrs_omit_if_default=True,
            job_id=override(omit=True),
            fatal=override(omit=True),
        ),
    )
    conv.register_structure_hook(
        JobResult, make_dict_structure_fn(JobResult, conv, fatal=override(omit=True))
    )
    return conv


converter: Final[Any] = _make()
