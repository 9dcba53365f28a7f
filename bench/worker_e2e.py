"""The worker process end to end: ``python -m queue_worker`` on a model folder, jobs through HTTP.

What a GPU session learns from it that ``gpu_generate.py`` cannot say: the worker's own
start-up (settings, ``from_pretrained`` of a local diffusers folder, the memory profile
``auto`` chooses, placement, warm-up), then each job as Salad's binary sends it
(``POST /generate``): the first frame fetched from a URL, the three stages, the decode
streamed into the encoder, the store, the answer. Each answer must be 200 with an MP4 of the
requested size and frame count that PyAV decodes; its metrics (stage timings, peak VRAM) are
kept with the start-up times and the profile the worker logged.

``--memory-cap-gib`` runs the worker with ``FASTWAN_GPU_MEMORY_CAP_GIB`` (a test aid): a big
GPU then runs as a card of that size would, ``GPU_MEMORY_PROFILE=auto`` choosing from the cap.

The worker runs from the same Python and ``PYTHONPATH`` as this script. A folder written by
``full_size_model.py --size tiny`` is the tiny-sparse model: the CPU runs only the tiny models,
so it is served as ``FASTWAN_MODEL=tiny-sparse`` (the worker finds it complete and loads it).

    python bench/worker_e2e.py --model /tmp/fastwan-full --json out.json          # GPU
    python bench/worker_e2e.py --model /tmp/fastwan-full --memory-cap-gib 10 --jobs i2v
    python bench/worker_e2e.py --model /tmp/tiny --tiny                           # CPU check
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import httpx

from fastwan_adapters.generator.model_folder import MARKER
from fastwan_adapters.testing import gradient_frame

#: The default job (720x1280, image-to-video) and the trained landscape size (text-to-video).
FULL_JOBS = {"i2v": (720, 1280, 121), "t2v": (1280, 704, 121)}
TINY_JOBS = {"i2v": (256, 320, 5), "t2v": (320, 256, 5)}
#: One prompt per job, so that each pays its text encoding (the prompt cache would serve a repeat).
PROMPTS = {
    "i2v": "a woman speaks to the camera with calm, composed energy",
    "t2v": "a lighthouse on a cliff at dusk, waves below, the beam sweeping through mist",
}
#: What the worker logs at start-up, read back from its log.
LOGGED = {
    "memory_profile": re.compile(r"memory profile (\S+)"),
    "load_s": re.compile(r"model \S+ loaded in ([\d.]+) s"),
    "warmup_s": re.compile(r"warm-up \(.*\) done in ([\d.]+) s"),
    "self_attention": re.compile(r"self-attention (\S+)"),
}


class Stopped(Exception):
    """SIGTERM: ``timeout`` ends the part at its limit."""


def stopped(signum: int, _frame: object) -> None:
    raise Stopped(f"stopped by signal {signum} (the part's time limit)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def image_server(folder: Path) -> Iterator[str]:
    """The first frames over HTTP on loopback, as the orchestrator's image URLs would serve them."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def worker_env(args: argparse.Namespace, scratch: Path, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "OUTPUT_DIR": str(scratch / "outputs"),
        "TMPDIR": str(scratch),
        "HF_HUB_OFFLINE": "1",
        "ALLOW_PRIVATE_IMAGE_URLS": "1",
        "LOG_FORMAT": "console",
        "GPU_MEMORY_PROFILE": args.profile,
        "WORKER_ID": "gpu-session",
        "SHUTDOWN_GRACE_S": "5",
    }
    for name in ("ORCHESTRATOR_BASE_URL", "B2_KEY_ID", "B2_APP_KEY", "B2_BUCKET_NAME", "FASTWAN_MODEL"):
        env.pop(name, None)  # local storage, no orchestrator: nothing leaves the machine
    if args.memory_cap_gib is not None:
        env["FASTWAN_GPU_MEMORY_CAP_GIB"] = str(args.memory_cap_gib)
    marker = args.model / MARKER
    if marker.is_file() and "size" not in json.loads(marker.read_text()):
        sparse = json.loads(marker.read_text()).get("sparse", False)
        # The worker finds the tiny model in FASTWAN_TINY_DIR (tiny-sparse: beside it, "-sparse").
        link = scratch / ("tiny-sparse" if sparse else "tiny")
        link.symlink_to(args.model.resolve(), target_is_directory=True)
        env |= {
            "FASTWAN_MODEL": "tiny-sparse" if sparse else "tiny",
            "FASTWAN_TINY_DIR": str(scratch / "tiny"),
        }
    else:
        env["FASTWAN_MODEL"] = str(args.model)
    return env


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the worker was not ready after {timeout:.0f} s")


def run_job(url: str, images: str, kind: str, size: tuple[int, int, int], timeout: float) -> dict[str, Any]:
    """One job through ``POST /generate``; the answer, the MP4's checks and the wall time."""
    width, height, frames = size
    job: dict[str, Any] = {
        "musetalk_job_id": f"gpu-session-{kind}-{width}x{height}",
        "prompt": PROMPTS[kind],
        "width": width,
        "height": height,
        "num_frames": frames,
        "seed": 42,
    }
    if kind == "i2v":
        job["image_url"] = f"{images}/first-{width}x{height}.png"
    started = time.perf_counter()
    answer = httpx.post(f"{url}/generate", json=job, timeout=timeout)
    wall = time.perf_counter() - started
    body = answer.json()
    result: dict[str, Any] = {"job": kind, "size": f"{width}x{height}x{frames}", "status": answer.status_code}
    result |= {"wall_s": round(wall, 2), "answer": body}
    problems = [] if answer.status_code == 200 else [f"answered {answer.status_code}: {body.get('error')}"]
    if answer.status_code == 200:
        video = httpx.get(body["output_url"].replace("localhost", "127.0.0.1"), timeout=60)
        with av.open(io.BytesIO(video.content)) as container:
            decoded = [(frame.width, frame.height) for frame in container.decode(video=0)]
        result["mp4"] = {"bytes": len(video.content), "frames": len(decoded), "sizes": sorted(set(decoded))}
        if len(decoded) != frames:
            problems.append(f"{len(decoded)} frames decoded, {frames} asked")
        if set(decoded) != {(width, height)}:
            problems.append(f"frames of {sorted(set(decoded))}, {width}x{height} asked")
    result["problems"] = problems
    return result


def logged(log_text: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, pattern in LOGGED.items():
        match = pattern.search(log_text)
        if match:
            found[key] = float(match.group(1)) if key.endswith("_s") else match.group(1).rstrip(",")
    return found


def keep(report: dict[str, Any], log_path: Path, json_path: Path | None) -> None:
    """What the worker logged so far into ``report``, and ``report`` into ``json_path``: written at
    each step, so that a run stopped at its time limit still leaves what it had measured."""
    log_text = log_path.read_text(errors="replace")
    report["worker"] = logged(log_text)
    report["worker_log_tail"] = log_text[-4000:]
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2))


def row(result: dict[str, Any]) -> str:
    metrics = result["answer"].get("metrics", {})
    timings = metrics.get("timings", {})
    cells = [
        result["job"],
        result["size"],
        str(result["status"]),
        *(f"{timings[key]:.2f}" if key in timings else "-" for key in _TIMINGS),
        f"{metrics['peak_vram_gb']:.2f}" if "peak_vram_gb" in metrics else "-",
        f"{result['wall_s']:.2f}",
        "ok" if not result["problems"] else "; ".join(result["problems"]),
    ]
    return "| " + " | ".join(cells) + " |"


_TIMINGS = ("download_s", "text_encode_s", "denoise_s", "decode_s", "encode_tail_s", "upload_s", "total_s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a folder in diffusers layout")
    parser.add_argument("--tiny", action="store_true", help="small jobs (a CPU check of the script)")
    parser.add_argument("--jobs", default="i2v,t2v", help="i2v, t2v or both, in that order")
    parser.add_argument("--memory-cap-gib", type=float, default=None, help="FASTWAN_GPU_MEMORY_CAP_GIB")
    parser.add_argument("--profile", default="auto", help="GPU_MEMORY_PROFILE (auto: from the memory)")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for /ready")
    parser.add_argument("--job-timeout", type=float, default=300.0, help="seconds one job may take")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stopped)
    sizes = TINY_JOBS if args.tiny else FULL_JOBS
    kinds = [kind.strip() for kind in args.jobs.split(",") if kind.strip()]
    if unknown := [kind for kind in kinds if kind not in sizes]:
        parser.error(f"--jobs must be among {', '.join(sizes)}, got {', '.join(unknown)}")

    report: dict[str, Any] = {
        "model": str(args.model),
        "memory_cap_gib": args.memory_cap_gib,
        "requested_profile": args.profile,
        "python": platform.python_version(),
        "jobs": [],
    }
    with tempfile.TemporaryDirectory(prefix="fastwan-e2e-") as name:
        scratch = Path(name)
        (scratch / "images").mkdir()
        for width, height, _ in sizes.values():
            gradient_frame(width, height).save(scratch / "images" / f"first-{width}x{height}.png")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = scratch / "worker.log"
        started = time.perf_counter()
        with image_server(scratch / "images") as images, log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "queue_worker"],
                env=worker_env(args, scratch, port),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                report["ready_s"] = round(wait_ready(url, process, args.ready_timeout), 2)
                print(f"worker ready after {report['ready_s']:.1f} s", file=sys.stderr)
                keep(report, log_path, args.json)
                for kind in kinds:
                    result = run_job(url, images, kind, sizes[kind], args.job_timeout)
                    report["jobs"].append(result)
                    keep(report, log_path, args.json)
                    print(
                        f"{kind} {result['size']}: {result['status']} in {result['wall_s']:.1f} s",
                        file=sys.stderr,
                    )
                    if result["status"] != 200:
                        break  # the worker may be gone (a fatal failure): nothing more to learn
            except (RuntimeError, httpx.HTTPError, Stopped) as error:
                report["error"] = f"{type(error).__name__}: {error}"
            finally:
                # Stopped at the part's limit, the worker must not outlive this script: the next
                # part needs the GPU (timeout signals this process only).
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                try:
                    report["exit_code"] = process.wait(5 if "error" in report else 60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    report["exit_code"] = process.wait(10)
        report["wall_s"] = round(time.perf_counter() - started, 2)
        keep(report, log_path, args.json)

    worker = report["worker"]
    print(json.dumps({key: value for key, value in report.items() if key not in ("jobs", "worker_log_tail")}))
    print("| job | size | status | " + " | ".join(_TIMINGS) + " | peak VRAM GiB | wall s | check |")
    print("|---" * (len(_TIMINGS) + 6) + "|")
    for result in report["jobs"]:
        print(row(result))
    ok = (
        bool(report["jobs"])
        and "error" not in report
        and all(result["status"] == 200 and not result["problems"] for result in report["jobs"])
    )
    ok = ok and len(report["jobs"]) == len(kinds) and report.get("exit_code") == 0
    if args.memory_cap_gib is not None:
        print(f"memory cap {args.memory_cap_gib:g} GiB: the worker chose {worker.get('memory_profile', '?')}")
    if not ok:
        print(f"worker log (last lines):\n{report['worker_log_tail'][-2500:]}", file=sys.stderr)
        if "error" in report:
            print(f"error: {report['error']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
