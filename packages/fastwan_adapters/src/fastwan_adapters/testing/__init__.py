"""Test doubles for what the adapters talk to, shipped so that other services' tests can use
them: an orchestrator that speaks the whole contract over real HTTP."""

from __future__ import annotations

from fastwan_adapters.testing.orchestrator_double import OrchestratorDouble
from fastwan_adapters.testing.orchestrator_faults import Endpoint, Fault, RecordedRequest, RecordingSleep
from fastwan_adapters.testing.orchestrator_state import DEFAULT_API_KEY

__all__ = ["DEFAULT_API_KEY", "Endpoint", "Fault", "OrchestratorDouble", "RecordedRequest", "RecordingSleep"]
