"""The threads a buffer worker runs a job with: its event loop's, the job thread, and the encoder's
session; nothing else (no thread per call, per heartbeat, per status or per progress update)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from fastwan_adapters.encoder import PyAVEncoder
from fastwan_core import GeneratedVideo, GenerationPlan, Stage
from fastwan_core.ports import FrameSink, GenerationEvents, Picture

from .rig import Rig, add

# The orchestrator double's: one per connection.
_TESTS_OWN = "Thread-"


class TwoChunks:
    """Three steps, then two chunks of grey frames; between them, notes the threads alive (the
    encoder's session is open then, encoding the first chunk)."""

    model_id = "test/two-chunks"
    device_name = "none"

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def generate(
        self, plan: GenerationPlan, image: Picture | None, events: GenerationEvents, sink: FrameSink
    ) -> GeneratedVideo:
        events.stage(Stage.TEXT_ENCODE)
        events.stage(Stage.DENOISE)
        for index in range(1, 4):
            events.check_cancelled()
            events.step(index, 3)
        events.stage(Stage.DECODE)
        size = plan.generated_size
        sink.add(np.full((1, size.height, size.width, 3), 128, dtype=np.uint8))
        self.threads = threading.enumerate()
        sink.add(np.full((plan.num_frames - 1, size.height, size.width, 3), 128, dtype=np.uint8))
        return GeneratedVideo(0.0)


def test_a_job_runs_on_the_loops_thread_the_job_thread_and_the_encoders_alone(
    make_rig: Callable[..., Rig],
) -> None:
    generator = TwoChunks()
    before = set(threading.enumerate())  # the test's own, and what earlier tests left
    rig = make_rig(generator=generator, encoder=PyAVEncoder()).start()
    buffer_job_id = add(rig.orch, "j-threads")

    rig.wait(rig.ended(buffer_job_id), "the job to end")
    rig.request_stop()
    rig.join()

    assert rig.orch.terminal_statuses(buffer_job_id)[0]["status"] == "succeeded"
    workers = sorted(t.name for t in set(generator.threads) - before if not t.name.startswith(_TESTS_OWN))
    # In production the loop runs on the main thread; here on the rig's "test-event-loop".
    assert workers == ["fastwan-encoder", "job", "test-event-loop"]
