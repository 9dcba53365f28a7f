"""Buffer-worker bench: what the claim loop costs per job, beyond the model's own time.

The real claim loop (``BufferWorker``), composed by its container, with its real heartbeat,
orchestrator client, progress sender, on-disk status outbox and claim journal (fsync included)
runs jobs from the orchestrator double on loopback. The generator takes a fixed time T (three
steps of T/3, reported through the core's events as the real one does) and returns a real frame
array, so the only variable left is the worker's own machinery. For each job:

    overhead = (arrival of its terminal status) - (arrival of the claim that handed it out) - T

as the orchestrator sees it: claim answer, validation, the job thread and the way back to the
event loop, the concurrent ``running`` status, progress, the outbox write and the status POST.
Two variants:

- ``excluded``: encoding and upload excluded (the core's fake encoder and in-memory store);
- ``included``: the real ``PyAVEncoder`` and ``LocalResultStore`` (an fsync'd file; B2's
  network time is not part of this bench).

    python bench/buffer_overhead.py                         # 50 jobs, T = 0.2 s, 3 runs
    python bench/buffer_overhead.py --jobs 20 --seconds 0.5 --frames 33 --size 480x832
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from dependency_injector import providers

from buffer_worker.containers import Container
from buffer_worker.settings import BufferWorkerSettings
from fastwan_adapters.encoder import PyAVEncoder
from fastwan_adapters.storage.local import LocalResultStore
from fastwan_adapters.testing import Endpoint, OrchestratorDouble
from fastwan_core import GeneratedVideo, GenerationPlan, Stage, WorkerInfo
from fastwan_core.ports import FrameSink, GenerationEvents, Picture
from fastwan_core.testing import FakeEncoder, FakeImageLoader, InMemoryResultStore


class FixedTimeGenerator:
    """Takes ``seconds`` per job, in three steps, then decodes mid-grey frames of the plan's size
    in one chunk."""

    model_id = "bench/fixed-time"
    device_name = "none"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def generate(
        self,
        plan: GenerationPlan,
        image: Picture | None,
        events: GenerationEvents,
        sink: FrameSink,
    ) -> GeneratedVideo:
        size = plan.generated_size
        events.stage(Stage.TEXT_ENCODE)
        events.stage(Stage.DENOISE)
        total = len(plan.timesteps)
        for index in range(1, total + 1):
            events.check_cancelled()
            time.sleep(self.seconds / total)
            events.step(index, total)
        events.stage(Stage.DECODE)
        sink.add(np.full((plan.num_frames, size.height, size.width, 3), 128, dtype=np.uint8))
        return GeneratedVideo()


def run_once(variant: str, jobs: int, seconds: float, frames: int, width: int, height: int) -> list[float]:
    """One worker, ``jobs`` jobs; returns each job's overhead in seconds."""
    with OrchestratorDouble() as orch, tempfile.TemporaryDirectory(prefix="bench-buffer-") as folder:
        ids = [
            orch.add_job(
                {
                    "musetalk_job_id": f"bench-{n}",
                    "prompt": "bench",
                    "num_frames": frames,
                    "width": width,
                    "height": height,
                }
            )
            for n in range(jobs)
        ]
        env = {
            "ORCHESTRATOR_BASE_URL": orch.url,
            "INTERNAL_API_KEY": orch.api_key,
            "BUFFER_WORKER_ID": "bench",
            "GPU_CLASS": "none",
            "FASTWAN_MODEL": "tiny",  # never loaded: the generator is FixedTimeGenerator
            "ORCHESTRATOR_RETRY_INITIAL_S": "0.1",
            "STATE_DIR": str(Path(folder) / "state"),
            "OUTPUT_DIR": str(Path(folder) / "outputs"),
        }
        container = Container(settings=BufferWorkerSettings.from_env(env))
        container.worker_info.override(providers.Object(WorkerInfo("bench", "0", gpu_class="none")))
        encoder: Any = PyAVEncoder() if variant == "included" else FakeEncoder()
        store: Any = (
            LocalResultStore(Path(folder) / "outputs") if variant == "included" else InMemoryResultStore()
        )
        container.generation.generator.override(providers.Object(FixedTimeGenerator(seconds)))
        container.generation.images.override(providers.Object(FakeImageLoader()))
        container.generation.encoder.override(providers.Object(encoder))
        container.generation.store.override(providers.Object(store))
        worker = container.worker()
        loops: list[asyncio.AbstractEventLoop] = []

        async def run() -> None:
            loops.append(asyncio.get_running_loop())
            await worker.run()

        thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
        thread.start()
        done = orch.wait_for(
            lambda o: all(o.terminal_statuses(b) for b in ids), timeout=jobs * (seconds + 30)
        )
        loops[0].call_soon_threadsafe(worker.stop)
        thread.join(30)
        container.shutdown_resources()
        if not done:
            raise SystemExit(f"{variant}: not every job ended")
        claims = [r.at for r in orch.requests(Endpoint.CLAIM) if r.answered_ok]
        ends = {
            r.ident: r.at
            for r in orch.requests(Endpoint.STATUS)
            if r.answered_ok and r.body.get("status") in ("succeeded", "failed", "cancelled")
        }
        # Jobs are handed out in order, one claim each: claim n handed out job n.
        return [ends[b] - claims[n] - seconds for n, b in enumerate(ids)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=0.2, help="T, the generator's fixed time per job")
    parser.add_argument("--frames", type=int, default=17, help="frames per job (4k+1)")
    parser.add_argument("--size", default="512x512", help="WIDTHxHEIGHT of each job")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.lower().split("x"))

    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(
        f"{args.jobs} jobs per run, T = {args.seconds * 1000:.0f} ms, "
        f"{args.frames} frames at {width}x{height}"
    )
    for variant in ("excluded", "included"):
        medians = []
        for run in range(args.runs):
            overheads = run_once(variant, args.jobs, args.seconds, args.frames, width, height)
            median = statistics.median(overheads) * 1000
            medians.append(median)
            p90 = statistics.quantiles(overheads, n=10)[-1] * 1000
            print(
                f"  {variant:8s} run {run + 1}: median {median:7.1f} ms, p90 {p90:7.1f} ms, "
                f"max {max(overheads) * 1000:7.1f} ms"
            )
        print(
            f"{variant:8s} encoding and upload: median of run medians "
            f"{statistics.median(medians):.1f} ms per job"
        )


if __name__ == "__main__":
    main()
