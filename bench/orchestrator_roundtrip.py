"""Round-trip cost of one orchestrator call on loopback: a pooled client against a new client per call.

Each call is a heartbeat (a JSON body out, a JSON answer read back) to the orchestrator double on
127.0.0.1, so the figures are the client's and the stack's overhead, not a network's. The pooled
client keeps one keep-alive connection; a new client per call pays for a TCP connect and an
``httpx.AsyncClient`` (its SSL context included) every time. Both on one event loop, as the
workers call it.

    python bench/orchestrator_roundtrip.py --calls 1000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from fastwan_adapters.orchestrator import Heartbeat, OrchestratorClient, WorkerStatus
from fastwan_adapters.testing import OrchestratorDouble

BEAT = Heartbeat(status=WorkerStatus.IDLE, gpu_class="RTX 4090", worker_version="bench")
WARMUP = 50


async def timed(calls: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    """Milliseconds per call, ``calls`` of them, after a short warm-up."""
    for _ in range(WARMUP):
        await call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


async def one_run(url: str, api_key: str, calls: int) -> dict[str, tuple[float, float]]:
    async with OrchestratorClient(url, api_key) as pooled:
        pooled_ms = await timed(calls, lambda: pooled.heartbeat("bench-worker", BEAT))

    async def fresh_client_call() -> None:
        async with OrchestratorClient(url, api_key) as client:
            await client.heartbeat("bench-worker", BEAT)

    fresh_ms = await timed(calls, fresh_client_call)
    return {
        "pooled client": (statistics.median(pooled_ms), p99(pooled_ms)),
        "new client per call": (statistics.median(fresh_ms), p99(fresh_ms)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per variant and run")
    parser.add_argument("--runs", type=int, default=3, help="runs; the report gives the median of them")
    args = parser.parse_args()

    with OrchestratorDouble() as orch:
        runs = [asyncio.run(one_run(orch.url, orch.api_key, args.calls)) for _ in range(args.runs)]

    print(f"{args.calls} heartbeat calls per variant, {args.runs} runs, loopback, orchestrator double")
    print(f"{'variant':<22}{'median ms':>12}{'p99 ms':>10}   per run (median/p99)")
    for variant in runs[0]:
        medians = [run[variant][0] for run in runs]
        p99s = [run[variant][1] for run in runs]
        per_run = "  ".join(f"{m:.3f}/{p:.3f}" for m, p in zip(medians, p99s, strict=True))
        print(f"{variant:<22}{statistics.median(medians):>12.3f}{statistics.median(p99s):>10.3f}   {per_run}")


if __name__ == "__main__":
    main()
