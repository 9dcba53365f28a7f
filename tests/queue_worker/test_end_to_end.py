"""The whole worker, for real: tiny random-weight model on CPU, PyAV encoder, the image loader
fetching from loopback, B2 (b2sdk's simulator) and the orchestrator (its HTTP double)."""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from b2sdk.v2 import B2Api, B2HttpApiConfig, Bucket, InMemoryAccountInfo, InMemoryCache, RawSimulator
from dependency_injector import providers

from fastwan_adapters.storage import B2ResultStore, B2Settings, UploadRetry
from fastwan_adapters.testing import Endpoint, OrchestratorDouble
from queue_worker.containers import Container
from tests.queue_worker.support import Served, png_server, serving, settings_for, wait_until

pytestmark = pytest.mark.slow

BUCKET = "talking-avatar"
JOB: dict[str, Any] = {
    "prompt": "a red kite over a beach",
    "width": 256,
    "height": 320,
    "num_frames": 5,
    "fps": 8,
}


@pytest.fixture(scope="module")
def image_url() -> Iterator[str]:
    """A PNG served from 127.0.0.1 (private: the worker must be told to allow it)."""
    with png_server() as (url, _asked):
        yield url


@pytest.fixture(scope="module")
def b2() -> tuple[B2Api, Bucket, dict[str, str]]:
    api = B2Api(
        InMemoryAccountInfo(), InMemoryCache(), api_config=B2HttpApiConfig(_raw_api_class=RawSimulator)
    )
    key_id, app_key = api.session.raw_api.create_account()
    api.authorize_account("production", key_id, app_key)
    bucket = api.create_bucket(BUCKET, "allPublic")
    return api, bucket, {"B2_KEY_ID": key_id, "B2_APP_KEY": app_key, "B2_BUCKET_NAME": BUCKET}


@pytest.fixture(scope="module")
def orchestrator() -> Iterator[OrchestratorDouble]:
    with OrchestratorDouble() as double:
        yield double


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_dir: Path,
    b2: tuple[B2Api, Bucket, dict[str, str]],
    orchestrator: OrchestratorDouble,
) -> Iterator[Served]:
    api, _bucket, b2_env = b2
    settings = settings_for(
        tmp_path_factory.mktemp("e2e"),
        FASTWAN_TINY_DIR=str(tiny_dir),
        ALLOW_PRIVATE_IMAGE_URLS="1",
        ORCHESTRATOR_BASE_URL=orchestrator.url,
        INTERNAL_API_KEY=orchestrator.api_key,
        **b2_env,
    )
    assert isinstance(settings.common.storage, B2Settings)
    container = Container(settings=settings)
    # Only the B2 connection differs from production: the same connect(), on the simulator.
    no_wait = UploadRetry(wait_initial_s=0.0, wait_max_s=0.0, wait_jitter_s=0.0)
    container.generation.store.override(
        providers.Callable(B2ResultStore.connect, settings.common.storage, api=api, retry=no_wait)
    )
    with serving(container) as served:
        yield served


def stored_video(bucket: Bucket, job_id: str) -> bytes:
    buffer = io.BytesIO()
    bucket.download_file_by_name(f"avatar/outputs/{job_id}.mp4").save(buffer)
    return buffer.getvalue()


def decoded(data: bytes) -> tuple[int, tuple[int, int]]:
    with av.open(io.BytesIO(data)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return len(frames), (frames[0].shape[1], frames[0].shape[0])


@pytest.mark.parametrize("kind", ["t2v", "i2v"])
def test_a_job_becomes_a_decodable_video_in_b2_at_the_requested_size(
    worker: Served, b2: tuple[B2Api, Bucket, dict[str, str]], image_url: str, kind: str
) -> None:
    job = {**JOB, "musetalk_job_id": f"e2e-{kind}", **({"image_url": image_url} if kind == "i2v" else {})}

    answer = worker.client.post("/generate", json=job, headers={"Salad-Job-Id": f"salad-{kind}"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["output_url"].endswith(f"/file/{BUCKET}/avatar/outputs/e2e-{kind}.mp4")
    assert body["metrics"]["model_id"] == "tiny" and body["metrics"]["steps"] == 3
    assert (body["metrics"]["timings"].get("download_s") is not None) is (kind == "i2v")
    assert decoded(stored_video(b2[1], f"e2e-{kind}")) == (5, (256, 320))
    assert body["musetalk_job_id"] == f"e2e-{kind}"
    assert body["metrics"]["gpu_class"] == "cpu"  # no GPU_CLASS: the device's name
    assert ("download" in body["metrics"]["stage_times"]) is (kind == "i2v")


def test_a_request_near_a_trained_size_is_generated_at_it_and_delivered_exactly(
    worker: Served, b2: tuple[B2Api, Bucket, dict[str, str]]
) -> None:
    job = {**JOB, "musetalk_job_id": "e2e-trained", "width": 720, "height": 1280}

    answer = worker.client.post("/generate", json=job)

    assert answer.status_code == 200, answer.text
    metrics = answer.json()["metrics"]
    assert (metrics["generated_size"], metrics["output_size"]) == ([704, 1280], [720, 1280])
    assert decoded(stored_video(b2[1], "e2e-trained")) == (5, (720, 1280))


def test_progress_reaches_the_orchestrator_in_order_monotonic_and_throttled(
    worker: Served, orchestrator: OrchestratorDouble, image_url: str
) -> None:
    job = {**JOB, "musetalk_job_id": "e2e-progress", "image_url": image_url}

    assert worker.client.post("/generate", json=job).status_code == 200
    assert orchestrator.wait_for(
        lambda o: any(b.get("status") == "succeeded" for b in o.progress("e2e-progress")), timeout=10
    )

    calls = [r for r in orchestrator.requests(Endpoint.PROGRESS) if r.ident == "e2e-progress"]
    assert all(r.headers["x-internal-api-key"] == orchestrator.api_key for r in calls)
    bodies = [r.body for r in calls]
    running = [b for b in bodies if b["status"] == "running"]
    assert list(dict.fromkeys(b["phase"] for b in running)) == [
        "downloading",
        "inference",
        "decoding",
        "encoding",
        "uploading",
    ]
    assert [b["progress"] for b in running] == sorted(b["progress"] for b in running)
    assert all(b["worker_id"] == "test-worker" for b in bodies)
    for before, after in itertools.pairwise(c for c in calls if c.body["status"] == "running"):
        if after.body["phase"] == before.body["phase"]:
            assert after.at - before.at >= 0.9
    assert bodies[-1]["status"] == "succeeded" and bodies[-1]["output_url"].endswith("e2e-progress.mp4")
    answer = worker.client.post("/generate", json={**job, "musetalk_job_id": "e2e-progress-2"})
    assert orchestrator.wait_for(
        lambda o: any(b.get("status") == "succeeded" for b in o.progress("e2e-progress-2")), timeout=10
    )
    # The final progress call carries the answer's metrics, sibling names included.
    assert orchestrator.progress("e2e-progress-2")[-1]["metrics"] == answer.json()["metrics"]


def test_an_unreachable_image_is_a_retryable_500_reported_to_the_orchestrator(
    worker: Served, orchestrator: OrchestratorDouble
) -> None:
    job = {**JOB, "musetalk_job_id": "e2e-noimage", "image_url": "http://127.0.0.1:9/missing.png"}

    answer = worker.client.post("/generate", json=job)

    assert answer.status_code == 500
    body = answer.json()
    assert body["error_code"] == "image_fetch_failed" and body["retryable"] is True
    assert (body["musetalk_job_id"], body["error_type"], body["stage"]) == (
        "e2e-noimage",
        "media_error",
        "download",
    )
    assert body["error_message"] == body["error"] and set(body["stage_times"]) == {"download"}
    assert orchestrator.wait_for(
        lambda o: any(b.get("error_code") == "image_fetch_failed" for b in o.progress("e2e-noimage")),
        timeout=10,
    )
    assert orchestrator.progress("e2e-noimage")[-1]["metrics"] == body["metrics"]


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """On a GPU box the job's thread waits on the GPU; on a 2-core test box torch's CPU threads
    would take both cores from the event loop, and the test would measure the box, not the worker."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_torch_thread")
def test_health_answers_within_100_ms_during_a_real_generation(worker: Served) -> None:
    job = {**JOB, "musetalk_job_id": "e2e-health", "width": 512, "height": 512, "num_frames": 9}
    runner = worker.container.slot()
    thread = threading.Thread(target=lambda: worker.client.post("/generate", json=job))
    thread.start()
    latencies = []
    try:
        wait_until(lambda: runner.busy, 10, "the job to start")
        while runner.busy:
            started = time.perf_counter()
            assert worker.client.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
    finally:
        thread.join(60)

    # A strict maximum would measure the neighbours on a shared test box (seen: ~200 ms at a load
    # of 7 on 2 cores); the 95th percentile still catches a stalled loop, and the fake-generator
    # test in test_generate holds the strict 100 ms bound.
    latencies.sort()
    assert len(latencies) >= 10
    assert latencies[len(latencies) // 2] < 0.02, latencies[-5:]
    assert latencies[int(len(latencies) * 0.95)] < 0.1, latencies[-5:]


def test_the_sparse_tiny_model_runs_vsa_and_a_seeded_job_gives_the_same_video(
    tmp_path: Path, tiny_dir: Path, tiny_sparse_dir: Path
) -> None:
    settings = settings_for(tmp_path, FASTWAN_MODEL="tiny-sparse", FASTWAN_TINY_DIR=str(tiny_dir))
    with serving(Container(settings=settings)) as served:
        answers = [
            served.client.post("/generate", json={**JOB, "musetalk_job_id": f"vsa-{n}", "seed": 9})
            for n in range(2)
        ]
    assert [answer.status_code for answer in answers] == [200, 200]
    metrics = [answer.json()["metrics"] for answer in answers]
    assert all(
        (m["attention"], m["vsa_sparsity"], m["model_id"]) == ("vsa", 0.8, "tiny-sparse") for m in metrics
    )
    assert metrics[0]["sha1"] == metrics[1]["sha1"]
