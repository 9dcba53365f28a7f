"""The orchestrator client against the orchestrator double, over real HTTP on loopback.

Backoff waits go through a recording sleep, so no test really sleeps; timeouts use a 0.1 s
client timeout against a delayed answer. Each test drives the client on an event loop of its
own (``run``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time

import pytest

from fastwan_adapters.config import ConfigError
from fastwan_adapters.orchestrator import (
    DeliveryInterrupted,
    Heartbeat,
    HeartbeatAnswer,
    OrchestratorAuthError,
    OrchestratorClient,
    OrchestratorError,
    OrchestratorProgressReporter,
    OrchestratorRejected,
    OrchestratorUnavailable,
    RetryPolicy,
    StatusOutcome,
    WorkerStatus,
    running_status_body,
    status_body,
)
from fastwan_adapters.testing import Endpoint, Fault, OrchestratorDouble, RecordingSleep
from fastwan_core import (
    ErrorCode,
    GenerateVideo,
    JobResult,
    JobState,
    Phase,
    ProgressUpdate,
    WorkerInfo,
    parse_job,
    result_to_wire,
)
from fastwan_core.testing import FakeClock, FakeEncoder, FakeGenerator, FakeImageLoader, InMemoryResultStore
from tests.adapters.support import opened

SECRET_KEY = "sk-live-Zq8v1-DO-NOT-LOG"
JOB = {"musetalk_job_id": "job-1", "prompt": "a cat on a sofa"}
TIMEOUT = 0.1  # seconds; the delay faults below are ten times longer
DEFAULT_BACKOFF = RetryPolicy()


@pytest.fixture
def orch():
    with OrchestratorDouble(api_key=SECRET_KEY) as double:
        yield double


@pytest.fixture
def sleep():
    return RecordingSleep()


@pytest.fixture
def client(orch, sleep, run):
    with opened(run, orch.url, SECRET_KEY, timeout=TIMEOUT, retry=RetryPolicy(sleep=sleep)) as c:
        yield c


@pytest.fixture
def refused_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def claimed_job(run, orch, client, worker_id="w-1") -> str:
    buffer_job_id = orch.add_job(JOB)
    assert run(client.claim(worker_id)) is not None
    return buffer_job_id


def assert_backoff(waits: list[float], backoff: RetryPolicy = DEFAULT_BACKOFF) -> None:
    """Each wait lies in its retry's band: exponential, jittered, capped."""
    for retry, wait in enumerate(waits, start=1):
        low, high = backoff.bounds(retry)
        assert low <= wait <= high, f"wait {retry} was {wait}, expected {low}..{high}"
        assert wait <= 30.0


# -- claim ----------------------------------------------------------------------------------


def test_claim_returns_the_job_and_sends_the_contract_body_and_key(orch, client, run):
    buffer_job_id = orch.add_job(JOB)

    job = run(client.claim("vast-1", gpu_class="RTX 4090", model_id="FastVideo/x", worker_version="1.2.3"))

    assert job == {**JOB, "buffer_job_id": buffer_job_id}
    (request,) = orch.requests(Endpoint.CLAIM)
    assert request.path == "/internal/buffer/jobs/claim"
    assert request.headers["x-internal-api-key"] == SECRET_KEY
    assert request.body == {
        "worker_id": "vast-1",
        "gpu_class": "RTX 4090",
        "model_id": "FastVideo/x",
        "worker_version": "1.2.3",
    }


def test_claim_with_no_job_is_none_and_leaves_out_fields_not_given(orch, client, run):
    assert run(client.claim("vast-1")) is None
    assert orch.claims() == [{"worker_id": "vast-1"}]


def test_claim_reads_answers_leniently(orch, client, run):
    orch.fail_next(Endpoint.CLAIM, Fault.answer(200, {"job": None, "error": "paused", "extra": [1]}))
    orch.fail_next(Endpoint.CLAIM, Fault.answer(200, {"job": {**JOB, "new_field": 1}, "unknown": True}))
    assert run(client.claim("vast-1")) is None
    assert run(client.claim("vast-1")) == {**JOB, "new_field": 1}


@pytest.mark.parametrize(
    ("fault", "error", "status_code"),
    [
        (Fault.answer(500), OrchestratorUnavailable, 500),
        (Fault.answer(503), OrchestratorUnavailable, 503),
        (Fault.answer(429), OrchestratorUnavailable, 429),
        (Fault.answer(401), OrchestratorAuthError, 401),
        (Fault.answer(403), OrchestratorAuthError, 403),
        (Fault.answer(422), OrchestratorRejected, 422),
        (Fault.answer(200, ["not", "an", "object"]), OrchestratorUnavailable, 200),
        (Fault.answer(200, {"job": "b-1"}), OrchestratorUnavailable, 200),
        (Fault.delayed(1.0), OrchestratorUnavailable, None),
        (Fault.dropped(), OrchestratorUnavailable, None),
    ],
    ids=["500", "503", "429", "401", "403", "422", "not-object", "job-not-object", "timeout", "dropped"],
)
def test_claim_failures_are_classified(orch, client, fault, error, status_code, run):
    orch.add_job(JOB)
    orch.fail_next(Endpoint.CLAIM, fault)

    with pytest.raises(error) as raised:
        run(client.claim("vast-1"))

    assert raised.value.status_code == status_code
    assert raised.value.path == "/internal/buffer/jobs/claim"
    assert len(orch.requests(Endpoint.CLAIM)) == 1  # one try: claim itself never retries


def test_claim_against_a_closed_port_is_unavailable(refused_url, run):
    with (
        opened(run, refused_url, SECRET_KEY, timeout=TIMEOUT) as c,
        pytest.raises(OrchestratorUnavailable),
    ):
        run(c.claim("vast-1"))


def test_auth_errors_name_the_variable_and_never_the_key(orch, client, run):
    orch.fail_next(Endpoint.CLAIM, Fault.answer(401))
    with pytest.raises(OrchestratorAuthError) as raised:
        run(client.claim("vast-1"))
    assert "INTERNAL_API_KEY" in str(raised.value)
    assert SECRET_KEY not in str(raised.value)


def test_claim_with_backoff_retries_with_exponential_jittered_waits_until_a_job(orch, client, sleep, run):
    buffer_job_id = orch.add_job(JOB)
    orch.fail_next(Endpoint.CLAIM, Fault.answer(503), times=2)
    orch.fail_next(Endpoint.CLAIM, Fault.delayed(1.0))
    orch.fail_next(Endpoint.CLAIM, Fault.dropped())

    job = run(client.claim_with_backoff("vast-1"))

    assert job is not None and job["buffer_job_id"] == buffer_job_id
    assert len(sleep.waits) == 4
    assert_backoff(sleep.waits)


def test_claim_backoff_is_capped_at_30_seconds_and_stays_jittered(orch, client, sleep, run):
    random.seed(20240601)
    orch.fail_next(Endpoint.CLAIM, Fault.answer(502), times=12)

    assert run(client.claim_with_backoff("vast-1")) is None

    assert len(sleep.waits) == 12
    assert_backoff(sleep.waits)
    assert max(sleep.waits) <= 30.0
    assert all(15.0 <= wait <= 30.0 for wait in sleep.waits[5:])  # 2**5 > 30: at the cap
    ratios = {round(wait / RetryPolicy().bounds(n)[1], 6) for n, wait in enumerate(sleep.waits, start=1)}
    assert len(ratios) == len(sleep.waits)  # random, not a fixed curve


def test_claim_with_backoff_stops_when_the_stop_event_is_set(orch, run):
    stop = asyncio.Event()
    sleep = RecordingSleep(stop=stop, stop_after=2)
    orch.fail_next(Endpoint.CLAIM, Fault.answer(503), times=100)

    with opened(run, orch.url, SECRET_KEY, timeout=TIMEOUT, retry=RetryPolicy(sleep=sleep)) as c:
        assert run(c.claim_with_backoff("vast-1", stop=stop)) is None

    assert len(orch.requests(Endpoint.CLAIM)) == 2


def test_a_real_backoff_wait_is_cut_short_by_the_stop_event(orch, run, loop):
    stop = asyncio.Event()
    orch.fail_next(Endpoint.CLAIM, Fault.answer(503), times=100)
    loop.call_later(0.1, stop.set)
    started = time.monotonic()

    with opened(run, orch.url, SECRET_KEY, timeout=TIMEOUT, retry=RetryPolicy(initial=20, cap=30)) as c:
        assert run(c.claim_with_backoff("vast-1", stop=stop)) is None

    assert time.monotonic() - started < 5  # the first wait alone is 10..20 s


def test_a_wrong_key_is_logged_once_backed_off_and_never_spins(orch, caplog, sleep, run):
    caplog.set_level(logging.DEBUG)
    buffer_job_id = orch.add_job(JOB)
    orch.fail_next(Endpoint.CLAIM, Fault.answer(401), times=5)

    with opened(run, orch.url, SECRET_KEY, timeout=TIMEOUT, retry=RetryPolicy(sleep=sleep)) as c:
        job = run(c.claim_with_backoff("vast-1"))

    assert job is not None and job["buffer_job_id"] == buffer_job_id
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "INTERNAL_API_KEY" in errors[0].getMessage()
    assert len(sleep.waits) == 5
    assert_backoff(sleep.waits)
    assert SECRET_KEY not in caplog.text


# -- heartbeat ------------------------------------------------------------------------------


def test_heartbeat_sends_the_contract_body_and_reads_cancel_job_ids(orch, client, run):
    orch.cancel("job-1", "b-9")
    beat = Heartbeat(
        status=WorkerStatus.BUSY,
        gpu_class="RTX 4090",
        current_job_id="job-1",
        phase=Phase.INFERENCE,
        progress=0.4,
        worker_version="1.2.3",
    )

    answer = run(client.heartbeat("vast-1", beat))

    assert answer == HeartbeatAnswer(frozenset({"job-1", "b-9"}))
    assert answer.cancels(None, "job-1")
    assert not answer.cancels("job-2")
    assert orch.heartbeats("vast-1") == [
        {
            "status": "busy",
            "gpu_class": "RTX 4090",
            "capacity": 1,
            "error": None,
            "current_job_id": "job-1",
            "phase": "inference",
            "progress": 0.4,
            "worker_version": "1.2.3",
        }
    ]


def test_an_idle_heartbeat_keeps_todays_fields_and_quotes_the_worker_id(orch, client, run):
    answer = run(
        client.heartbeat("vast 1/a", Heartbeat(status=WorkerStatus.IDLE, gpu_class="RTX 3080", error="x"))
    )
    assert answer.cancel_job_ids == frozenset()
    (request,) = orch.requests(Endpoint.HEARTBEAT)
    assert request.path == "/internal/buffer/workers/vast%201%2Fa/heartbeat"
    assert request.ident == "vast 1/a"
    assert request.body == {"status": "idle", "gpu_class": "RTX 3080", "capacity": 1, "error": "x"}


@pytest.mark.parametrize(
    "body", [{"detail": "ok", "cancel_job_ids": "job-1"}, {"cancel_job_ids": [1, None, "job-2"]}, "ok"]
)
def test_heartbeat_answers_are_read_leniently(orch, client, body, run):
    orch.fail_next(Endpoint.HEARTBEAT, Fault.answer(200, body))
    answer = run(
        client.heartbeat("vast-1", {"status": "idle", "gpu_class": "x", "capacity": 1, "error": None})
    )
    assert answer.cancel_job_ids <= {"job-2"}


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.answer(500), OrchestratorUnavailable),
        (Fault.answer(404), OrchestratorRejected),
        (Fault.answer(403), OrchestratorAuthError),
        (Fault.delayed(1.0), OrchestratorUnavailable),
        (Fault.dropped(), OrchestratorUnavailable),
    ],
    ids=["500", "404", "403", "timeout", "dropped"],
)
def test_a_failed_heartbeat_raises_once_without_retrying(orch, client, sleep, fault, error, run):
    orch.fail_next(Endpoint.HEARTBEAT, fault)
    with pytest.raises(error):
        run(client.heartbeat("vast-1", Heartbeat(status=WorkerStatus.IDLE, gpu_class="x")))
    assert len(orch.requests(Endpoint.HEARTBEAT)) == 1
    assert sleep.waits == []


def test_heartbeat_progress_out_of_range_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"Heartbeat\.progress"):
        Heartbeat(status=WorkerStatus.BUSY, gpu_class="x", progress=1.5)


# -- the overall deadline, and a stop during a call --------------------------------------------


def test_a_dripping_answer_ends_by_the_call_deadline_though_each_byte_beats_the_read_timeout(orch, run):
    orch.add_job(JOB)
    orch.fail_next(Endpoint.CLAIM, Fault.dripped(0.2))  # a couple of hundred bytes: 40 s or so
    started = time.monotonic()

    with (
        opened(run, orch.url, SECRET_KEY, timeout=2.0, deadline_s=0.5) as c,
        pytest.raises(OrchestratorUnavailable, match="ORCHESTRATOR_CALL_DEADLINE_S") as raised,
    ):
        run(c.claim("vast-1"))

    assert 0.5 <= time.monotonic() - started < 1.5
    assert "within 0.5 s" in str(raised.value) and raised.value.status_code is None


def test_a_stop_abandons_a_claim_in_flight_at_once(orch, run, loop):
    orch.add_job(JOB)
    orch.fail_next(Endpoint.CLAIM, Fault.dripped(0.2))
    stop = asyncio.Event()
    loop.call_later(0.3, stop.set)
    started = time.monotonic()

    with opened(run, orch.url, SECRET_KEY, timeout=2.0, deadline_s=30.0) as c:
        assert run(c.claim_with_backoff("vast-1", stop=stop)) is None

    assert time.monotonic() - started < 1.0
    assert len(orch.requests(Endpoint.CLAIM)) == 1  # abandoned, not retried


def test_a_stop_set_before_a_status_call_still_lets_that_one_try_finish(orch, client, run):
    buffer_job_id = claimed_job(run, orch, client)
    orch.fail_next(Endpoint.STATUS, Fault.delayed(0.05))
    stop = asyncio.Event()
    stop.set()  # a second signal's one try

    assert run(client.post_status(buffer_job_id, {"status": "failed"}, stop=stop)) is StatusOutcome.RECORDED
    assert orch.terminal_statuses(buffer_job_id) == [{"status": "failed"}]


def test_a_stop_during_a_status_call_abandons_it_without_a_retry(orch, run, loop):
    stop = asyncio.Event()
    with opened(run, orch.url, SECRET_KEY, timeout=2.0) as c:
        buffer_job_id = claimed_job(run, orch, c)
        orch.fail_next(Endpoint.STATUS, Fault.dripped(0.2))
        loop.call_later(0.2, stop.set)

        with pytest.raises(DeliveryInterrupted, match="abandoned"):
            run(c.post_status(buffer_job_id, {"status": "failed"}, stop=stop))

    assert len(orch.statuses(buffer_job_id, recorded_only=False)) == 1


@pytest.mark.parametrize("deadline", [0, -1.0])
def test_a_call_deadline_must_be_positive_naming_the_variable(orch, deadline):
    with pytest.raises(ValueError, match="ORCHESTRATOR_CALL_DEADLINE_S must be positive"):
        OrchestratorClient(orch.url, SECRET_KEY, deadline_s=deadline)


# -- status ---------------------------------------------------------------------------------


def test_status_recorded_on_2xx(orch, client, run):
    buffer_job_id = claimed_job(run, orch, client)
    result = JobResult(status=JobState.SUCCEEDED, output_url="https://f005.example/file/b/job-1.mp4")

    assert run(client.post_status(buffer_job_id, running_status_body("w-1"))) is StatusOutcome.RECORDED
    assert run(client.post_status(buffer_job_id, status_body(result, "w-1"))) is StatusOutcome.RECORDED

    assert orch.statuses(buffer_job_id) == [
        {"status": "running", "worker_id": "w-1"},
        {"status": "succeeded", "output_url": "https://f005.example/file/b/job-1.mp4", "worker_id": "w-1"},
    ]


def test_a_failed_status_carries_error_code_and_retryable(orch, client, run):
    buffer_job_id = claimed_job(run, orch, client)
    result = JobResult.failure(ErrorCode.UPLOAD_FAILED, "B2 answered 503")

    run(client.post_status(buffer_job_id, status_body(result, "w-1")))

    (body,) = orch.terminal_statuses(buffer_job_id)
    assert body == {
        "status": "failed",
        "error": "B2 answered 503",
        "error_code": "upload_failed",
        "retryable": True,
        "worker_id": "w-1",
        # the names the orchestrator parses from its sibling worker
        "error_message": "B2 answered 503",
        "error_type": "processing_error",
        "stage": "unknown",
        "stage_times": {},
    }


@pytest.mark.parametrize("code", [404, 409])
def test_status_for_a_job_taken_away_is_gone_and_not_retried(orch, client, sleep, code, run):
    buffer_job_id = claimed_job(run, orch, client)
    orch.take_away(buffer_job_id, status=code)

    assert run(client.post_status(buffer_job_id, {"status": "failed"})) is StatusOutcome.GONE

    assert len(orch.statuses(buffer_job_id, recorded_only=False)) == 1
    assert sleep.waits == []


def test_status_refused_with_another_4xx_is_rejected_and_not_retried(orch, client, sleep, run):
    buffer_job_id = claimed_job(run, orch, client)
    orch.fail_next(Endpoint.STATUS, Fault.answer(422))

    assert run(client.post_status(buffer_job_id, {"status": "failed"})) is StatusOutcome.REJECTED

    assert len(orch.statuses(buffer_job_id, recorded_only=False)) == 1
    assert sleep.waits == []


def test_status_is_retried_through_5xx_timeouts_drops_and_auth_until_recorded(orch, client, sleep, run):
    buffer_job_id = claimed_job(run, orch, client)
    orch.fail_next(Endpoint.STATUS, Fault.answer(500))
    orch.fail_next(Endpoint.STATUS, Fault.answer(503))
    orch.fail_next(Endpoint.STATUS, Fault.delayed(1.0))
    orch.fail_next(Endpoint.STATUS, Fault.dropped())
    orch.fail_next(Endpoint.STATUS, Fault.answer(401))

    outcome = run(client.post_status(buffer_job_id, {"status": "succeeded", "worker_id": "w-1"}))

    assert outcome is StatusOutcome.RECORDED
    assert orch.terminal_statuses(buffer_job_id) == [{"status": "succeeded", "worker_id": "w-1"}]
    assert len(sleep.waits) == 5
    assert_backoff(sleep.waits)


def test_status_retry_is_interrupted_by_the_stop_event_and_nothing_is_recorded(orch, run):
    stop = asyncio.Event()
    sleep = RecordingSleep(stop=stop, stop_after=3)
    with opened(run, orch.url, SECRET_KEY, timeout=TIMEOUT, retry=RetryPolicy(sleep=sleep)) as c:
        buffer_job_id = claimed_job(run, orch, c)
        orch.fail_next(Endpoint.STATUS, Fault.answer(503), times=100)

        with pytest.raises(DeliveryInterrupted):
            run(c.post_status(buffer_job_id, {"status": "failed"}, stop=stop))

    assert len(orch.statuses(buffer_job_id, recorded_only=False)) == 3
    assert orch.terminal_statuses(buffer_job_id) == []


def test_status_with_max_attempts_raises_the_last_failure(orch, client, run):
    buffer_job_id = claimed_job(run, orch, client)
    orch.fail_next(Endpoint.STATUS, Fault.answer(503), times=100)

    with pytest.raises(OrchestratorUnavailable):
        run(client.post_status(buffer_job_id, {"status": "running"}, max_attempts=3))

    assert len(orch.statuses(buffer_job_id, recorded_only=False)) == 3


# -- progress -------------------------------------------------------------------------------


def test_progress_is_sent_as_the_core_update(orch, client, run):
    update = ProgressUpdate(
        status=JobState.RUNNING, phase=Phase.INFERENCE, progress=0.42, step=2, total_steps=3, worker_id="w-1"
    )
    assert run(client.post_progress("job-1", update)) is True
    assert orch.progress("job-1") == [
        {
            "status": "running",
            "phase": "inference",
            "progress": 0.42,
            "step": 2,
            "total_steps": 3,
            "worker_id": "w-1",
        }
    ]


@pytest.mark.parametrize(
    "fault",
    [Fault.answer(500), Fault.answer(401), Fault.answer(404), Fault.delayed(1.0), Fault.dropped()],
    ids=["500", "401", "404", "timeout", "dropped"],
)
def test_a_failed_progress_call_is_false_once_and_never_raises(orch, client, sleep, fault, run):
    orch.fail_next(Endpoint.PROGRESS, fault)
    assert run(client.post_progress("job-1", {"status": "running", "progress": 0.1})) is False
    assert len(orch.requests(Endpoint.PROGRESS)) == 1
    assert sleep.waits == []


def test_progress_to_a_closed_port_is_false(refused_url, run):
    with opened(run, refused_url, SECRET_KEY, timeout=TIMEOUT) as c:
        assert run(c.post_progress("job-1", {"status": "running"})) is False


# -- the progress reporter ------------------------------------------------------------------


def test_reporter_sends_updates_in_order(orch, client, run):
    async def scenario() -> None:
        async with OrchestratorProgressReporter(client) as reporter:
            reporter.report(
                "job-1", ProgressUpdate(status=JobState.RUNNING, phase=Phase.DOWNLOADING, progress=0.0)
            )
            reporter.report(
                "job-1", ProgressUpdate(status=JobState.SUCCEEDED, progress=1.0, output_url="https://x/y.mp4")
            )
            assert await reporter.flush(5)

    run(scenario())

    assert orch.progress("job-1") == [
        {"status": "running", "phase": "downloading", "progress": 0.0},
        {"status": "succeeded", "progress": 1.0, "output_url": "https://x/y.mp4"},
    ]


def test_a_slow_orchestrator_never_slows_report_and_gets_the_freshest_value(orch, run):
    orch.fail_next(Endpoint.PROGRESS, Fault.delayed(0.5))

    async def scenario(c: OrchestratorClient) -> float:
        async with OrchestratorProgressReporter(c) as reporter:
            reporter.report("job-1", ProgressUpdate(status=JobState.RUNNING, progress=0.01))
            await asyncio.sleep(0.05)  # the first call is on its way, and waits
            started = time.monotonic()
            for step in range(2, 21):
                reporter.report("job-1", ProgressUpdate(status=JobState.RUNNING, progress=step / 100))
            reporter.report("job-1", ProgressUpdate(status=JobState.FAILED, error="boom"))
            spent = time.monotonic() - started
            assert await reporter.flush(5)
        return spent

    with opened(run, orch.url, SECRET_KEY, timeout=2.0) as c:
        spent = run(scenario(c))

    assert spent < 0.25  # 21 reports while the first call waits 0.5 s
    sent = orch.progress("job-1")
    assert len(sent) <= 3
    assert sent[-2:] == [{"status": "running", "progress": 0.2}, {"status": "failed", "error": "boom"}]


def test_reporter_never_raises_when_the_orchestrator_is_down(refused_url, run):
    async def scenario(c: OrchestratorClient) -> None:
        reporter = OrchestratorProgressReporter(c)
        async with reporter:
            reporter.report("job-1", ProgressUpdate(status=JobState.RUNNING, progress=0.1))
            assert await reporter.flush(5)
        reporter.report(
            "job-1", ProgressUpdate(status=JobState.RUNNING, progress=0.2)
        )  # after close: dropped

    with opened(run, refused_url, SECRET_KEY, timeout=TIMEOUT) as c:
        run(scenario(c))


def test_the_use_case_reports_every_phase_to_the_orchestrator(orch, client, run):
    clock = FakeClock(tick=0.01)
    reporter = OrchestratorProgressReporter(client)
    usecase = GenerateVideo(
        images=FakeImageLoader(),
        generator=FakeGenerator(clock=clock, seconds_per_step=2.0),
        encoder=FakeEncoder(),
        store=InMemoryResultStore(),
        progress=reporter,
        clock=clock,
        worker=WorkerInfo(worker_id="w-1"),
    )
    job = parse_job({**JOB, "image_url": "https://example.com/face.png"})

    async def scenario() -> JobResult:
        async with reporter:
            return usecase.run(job)  # reports queue while the job runs; they go out after it

    result = run(scenario())

    assert result.succeeded
    sent = orch.progress("job-1")
    phases = [body["phase"] for body in sent if "phase" in body]
    assert phases == sorted(set(phases), key=[p.value for p in Phase].index)
    assert {"downloading", "inference", "decoding", "encoding", "uploading"} <= set(phases)
    assert sent[-1] == {
        "status": "succeeded",
        "progress": 1.0,
        "output_url": "memory://job-1.mp4",
        "worker_id": "w-1",
        "metrics": result_to_wire(result)["metrics"],  # the final call carries the job's metrics
    }


# -- secrets, configuration -----------------------------------------------------------------


def test_no_log_line_error_or_repr_ever_holds_the_key(orch, caplog, refused_url, run):
    caplog.set_level(logging.DEBUG)  # httpx's and httpcore's own debug lines included
    stop = asyncio.Event()
    messages: list[str] = []
    with opened(
        run,
        orch.url,
        SECRET_KEY,
        timeout=TIMEOUT,
        retry=RetryPolicy(sleep=RecordingSleep(stop=stop, stop_after=2)),
    ) as c:
        buffer_job_id = claimed_job(run, orch, c)
        for endpoint, code in [(Endpoint.CLAIM, 401), (Endpoint.HEARTBEAT, 403), (Endpoint.PROGRESS, 500)]:
            orch.fail_next(endpoint, Fault.answer(code))
        orch.fail_next(Endpoint.STATUS, Fault.answer(401), times=10)
        for call in (
            lambda: run(c.claim("w-1")),
            lambda: run(c.heartbeat("w-1", Heartbeat(status=WorkerStatus.IDLE, gpu_class="x"))),
            lambda: run(c.post_status(buffer_job_id, {"status": "failed"}, stop=stop)),
        ):
            with pytest.raises(OrchestratorError) as raised:
                call()
            messages += [str(raised.value), repr(raised.value)]
        run(c.post_progress("job-1", {"status": "running"}))
        messages.append(repr(c))
    with (
        opened(run, refused_url, SECRET_KEY, timeout=TIMEOUT) as c,
        pytest.raises(Exception) as raised,
    ):
        run(c.claim("w-1"))
    messages.append(str(raised.value))

    assert caplog.records  # the failures above were logged
    assert SECRET_KEY not in caplog.text
    assert not [m for m in messages if SECRET_KEY in m]


def test_from_env_requires_both_variables_and_names_the_missing_one(orch, run):
    with pytest.raises(ConfigError, match="INTERNAL_API_KEY"):
        OrchestratorClient.from_env({"ORCHESTRATOR_BASE_URL": orch.url})
    c = OrchestratorClient.from_env({"ORCHESTRATOR_BASE_URL": orch.url, "INTERNAL_API_KEY": SECRET_KEY})
    assert run(c.claim("w-1")) is None
    run(c.aclose())


def test_a_base_url_path_prefix_is_kept(run):
    with OrchestratorDouble() as orch, opened(run, orch.url + "/api", orch.api_key) as c:
        run(c.post_progress("job-1", {"status": "running"}))
        assert orch.requests()[0].path == "/api/internal/videogen/jobs/job-1/progress"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"initial": 0}, "initial"), ({"cap": -1}, "cap"), ({"initial": 5, "cap": 2}, "cap")],
)
def test_backoff_refuses_bad_settings_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"RetryPolicy\.{field}"):
        RetryPolicy(**kwargs)
