"""Test doubles for what the adapters talk to, shipped so that other services' tests (and the
benches) can use them: an orchestrator that speaks the whole contract over real HTTP (with lease
rules, opt-in), SaladCloud's job-queue binary, B2 (b2sdk's own simulator behind B2's HTTP API),
a frame sink that collects a whole video, and a first frame to send."""

from __future__ import annotations

from fastwan_adapters.testing.b2_double import B2Call, B2Double
from fastwan_adapters.testing.frames import FrameCollector, gradient_frame
from fastwan_adapters.testing.orchestrator_double import OrchestratorDouble
from fastwan_adapters.testing.orchestrator_faults import Endpoint, Fault, RecordedRequest, RecordingSleep
from fastwan_adapters.testing.orchestrator_leases import Claim, LeaseRules
from fastwan_adapters.testing.orchestrator_state import DEFAULT_API_KEY
from fastwan_adapters.testing.salad_double import Attempt, JobState, Outcome, SaladJob, SaladQueueDouble

__all__ = [
    "DEFAULT_API_KEY",
    "Attempt",
    "B2Call",
    "B2Double",
    "Claim",
    "Endpoint",
    "Fault",
    "FrameCollector",
    "JobState",
    "LeaseRules",
    "OrchestratorDouble",
    "Outcome",
    "RecordedRequest",
    "RecordingSleep",
    "SaladJob",
    "SaladQueueDouble",
    "gradient_frame",
]
