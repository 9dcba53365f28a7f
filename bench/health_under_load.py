"""How fast ``GET /health`` answers while the queue worker generates (target: p99 under 50 ms).

Starts ``python -m queue_worker`` (tiny random-weight model, local storage, no orchestrator) in
its own process, so that the probing client never shares the worker's GIL, waits until it is
ready, then for each run posts one job sized to keep a CPU busy for at least ``--min-job-s``
seconds and probes ``/health`` every ``--interval`` seconds until the answer comes back. The
table gives, per run, the job's time, the number of probes, and their p50, p99 and maximum
latency; the last row is the median of the runs.

    python bench/health_under_load.py                          # 3 runs, 1280x704x25 on CPU
    python bench/health_under_load.py --runs 5 --width 960 --height 544 --frames 9
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker(tmp: Path, port: int, tiny_dir: Path | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "FASTWAN_MODEL": "tiny",
        "OUTPUT_DIR": str(tmp / "outputs"),
        "HF_HUB_OFFLINE": "1",
        "LOG_LEVEL": "warning",
    }
    for name in ("ORCHESTRATOR_BASE_URL", "B2_KEY_ID", "B2_APP_KEY", "B2_BUCKET_NAME"):
        env.pop(name, None)
    if tiny_dir is not None:
        env["FASTWAN_TINY_DIR"] = str(tiny_dir)
    log = (tmp / "worker.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "queue_worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_ready(url: str, worker: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with code {worker.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the worker was not ready in time")


def one_run(url: str, job: dict[str, object], interval: float) -> tuple[float, list[float]]:
    """Post ``job``; probe ``/health`` until it is answered. Returns the job's time and the latencies."""
    answer: list[httpx.Response] = []

    def post() -> None:
        answer.append(httpx.post(f"{url}/generate", json=job, timeout=600))

    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=5) as probe:
        probe.get("/health")  # open the connection before the job starts
        started = time.perf_counter()
        sender = threading.Thread(target=post)
        sender.start()
        while sender.is_alive():
            before = time.perf_counter()
            probe.get("/health").raise_for_status()
            latencies.append(time.perf_counter() - before)
            time.sleep(interval)
        sender.join()
    elapsed = time.perf_counter() - started
    if answer[0].status_code != 200:
        raise SystemExit(f"the job failed: {answer[0].status_code} {answer[0].text[:300]}")
    return elapsed, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=704)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between probes")
    parser.add_argument("--min-job-s", type=float, default=10.0, help="warn if a job is shorter")
    parser.add_argument("--tiny-dir", type=Path, default=None, help="FASTWAN_TINY_DIR (built once)")
    args = parser.parse_args()

    job = {
        "prompt": "a harbour at night",
        "width": args.width,
        "height": args.height,
        "num_frames": args.frames,
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp, port = Path(tmp_name), free_port()
        url = f"http://127.0.0.1:{port}"
        worker = start_worker(tmp, port, args.tiny_dir)
        try:
            wait_ready(url, worker)
            rows = []
            for run in range(1, args.runs + 1):
                elapsed, latencies = one_run(url, {**job, "musetalk_job_id": f"bench-{run}"}, args.interval)
                rows.append((elapsed, len(latencies), *(percentile(latencies, q) for q in (0.5, 0.99, 1.0))))
                if elapsed < args.min_job_s:
                    print(f"warning: run {run} took {elapsed:.1f} s, under --min-job-s; use a larger size")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)

    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"job: {args.width}x{args.height}x{args.frames}, tiny model on CPU, probe every {args.interval}s")
    print(f"{'run':>6} {'job s':>7} {'probes':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    medians = tuple(statistics.median(column) for column in zip(*rows, strict=True))
    labelled = [*((str(index), row) for index, row in enumerate(rows, 1)), ("median", medians)]
    for label, (elapsed, count, p50, p99, worst) in labelled:
        ms = " ".join(f"{value * 1e3:>8.1f}" for value in (p50, p99, worst))
        print(f"{label:>6} {elapsed:>7.1f} {count:>7.0f} {ms}")
    print(f"target p99 < 50 ms: {'met' if medians[3] < 0.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
