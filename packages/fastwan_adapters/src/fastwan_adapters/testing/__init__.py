"""Test doubles for what the adapters talk to, shipped so that other services' tests (and the
benches) can use them: an orchestrator that speaks the whole contract over real HTTP, and a
frame sink that collects a whole video."""

from __future__ import annotations

from fastwan_adapters.testing.frames import FrameCollector
from fastwan_adapters.testing.orchestrator_double import OrchestratorDouble
from fastwan_adapters.testing.orchestrator_faults import Endpoint, Fault, RecordedRequest, RecordingSleep
from fastwan_adapters.testing.orchestrator_state import DEFAULT_API_KEY

__all__ = [
    "DEFAULT_API_KEY",
    "Endpoint",
    "Fault",
    "FrameCollector",
    "OrchestratorDouble",
    "RecordedRequest",
    "RecordingSleep",
]
