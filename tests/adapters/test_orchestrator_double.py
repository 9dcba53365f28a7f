"""The orchestrator double, driven with plain httpx: what it answers and what it records."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from fastwan_adapters.testing import DEFAULT_API_KEY, Endpoint, Fault, LeaseRules, OrchestratorDouble

JOB = {"musetalk_job_id": "job-1", "prompt": "a cat on a sofa", "width": 720, "height": 1280}
CLAIM = "/internal/buffer/jobs/claim"


@pytest.fixture
def orch():
    with OrchestratorDouble() as double:
        yield double


@pytest.fixture
def http(orch):
    with httpx.Client(base_url=orch.url, headers={"X-Internal-API-Key": orch.api_key}, timeout=2.0) as client:
        yield client


def status_path(buffer_job_id: str) -> str:
    return f"/internal/buffer/jobs/{buffer_job_id}/status"


def test_claims_hand_out_jobs_first_in_first_out_then_null(orch, http):
    first = orch.add_job(JOB)
    second = orch.add_job({**JOB, "musetalk_job_id": "job-2"}, buffer_job_id="b-chosen")

    answers = [http.post(CLAIM, json={"worker_id": "w-1"}).json() for _ in range(3)]

    assert [a["job"]["buffer_job_id"] if a["job"] else None for a in answers] == [first, "b-chosen", None]
    assert answers[0]["job"]["prompt"] == JOB["prompt"]
    assert answers[2] == {"job": None, "error": None}
    assert orch.job_state(second) == "claimed"
    assert orch.claims() == [{"worker_id": "w-1"}] * 3


def test_every_request_is_recorded_with_method_path_headers_body_and_monotonic_time(orch, http):
    before = time.monotonic()
    http.post("/internal/buffer/workers/w-1/heartbeat", json={"status": "idle"})
    http.post("/internal/videogen/jobs/job-1/progress", json={"status": "running", "progress": 0.5})

    first, second = orch.requests()
    assert (first.method, first.path, first.endpoint, first.ident) == (
        "POST",
        "/internal/buffer/workers/w-1/heartbeat",
        Endpoint.HEARTBEAT,
        "w-1",
    )
    assert first.headers["x-internal-api-key"] == DEFAULT_API_KEY
    assert first.body == {"status": "idle"}
    assert before <= first.at <= second.at <= time.monotonic()
    assert (first.answer, second.answer) == (200, 200)
    assert orch.progress("job-1") == [{"status": "running", "progress": 0.5}]
    assert orch.heartbeats("w-1") == [{"status": "idle"}]


@pytest.mark.parametrize("headers", [{}, {"X-Internal-API-Key": "wrong"}])
def test_a_missing_or_wrong_key_gets_401_and_changes_nothing(orch, headers):
    orch.add_job(JOB)
    with httpx.Client(base_url=orch.url, headers=headers) as client:
        answer = client.post(CLAIM, json={"worker_id": "w-1"})

    assert answer.status_code == 401
    assert orch.job_state("b-0001") == "queued"
    assert orch.requests()[0].answer == 401


def test_status_is_recorded_for_the_claiming_worker_and_a_second_terminal_one_conflicts(orch, http):
    buffer_job_id = orch.add_job(JOB)
    http.post(CLAIM, json={"worker_id": "w-1"})

    codes = [
        http.post(status_path(buffer_job_id), json={"status": s, "worker_id": "w-1"}).status_code
        for s in ("running", "succeeded", "failed")
    ]

    assert codes == [200, 200, 409]
    assert [s["status"] for s in orch.statuses(buffer_job_id)] == ["running", "succeeded"]
    assert orch.terminal_statuses(buffer_job_id) == [{"status": "succeeded", "worker_id": "w-1"}]
    assert len(orch.statuses(buffer_job_id, recorded_only=False)) == 3
    assert orch.job_state(buffer_job_id) == "succeeded"


def test_status_for_unknown_unclaimed_foreign_or_taken_jobs(orch, http):
    unclaimed = orch.add_job(JOB)
    assert http.post(status_path("b-unknown"), json={"status": "failed"}).status_code == 404
    assert http.post(status_path(unclaimed), json={"status": "failed"}).status_code == 409

    http.post(CLAIM, json={"worker_id": "w-1"})
    assert http.post(status_path(unclaimed), json={"status": "failed", "worker_id": "w-2"}).status_code == 409
    assert http.post(status_path(unclaimed), json={"status": "bogus"}).status_code == 422

    orch.take_away(unclaimed, status=404)
    assert http.post(status_path(unclaimed), json={"status": "failed", "worker_id": "w-1"}).status_code == 404
    assert orch.terminal_statuses(unclaimed) == []


def test_terminal_conflict_can_be_turned_off(http):
    with OrchestratorDouble(terminal_conflict=False) as orch:
        buffer_job_id = orch.add_job(JOB)
        with httpx.Client(base_url=orch.url, headers={"X-Internal-API-Key": orch.api_key}) as client:
            client.post(CLAIM, json={"worker_id": "w-1"})
            codes = [
                client.post(status_path(buffer_job_id), json={"status": "failed"}).status_code for _ in "ab"
            ]
    assert codes == [200, 200]


def test_heartbeat_answers_carry_cancel_job_ids_only_while_set(orch, http):
    path = "/internal/buffer/workers/w-1/heartbeat"
    assert http.post(path, json={"status": "busy"}).json() == {"detail": "ok"}
    orch.cancel("job-1", "b-0007")
    assert http.post(path, json={"status": "busy"}).json() == {
        "detail": "ok",
        "cancel_job_ids": ["b-0007", "job-1"],
    }
    orch.clear_cancels()
    assert "cancel_job_ids" not in http.post(path, json={"status": "busy"}).json()


def test_a_status_fault_applies_to_the_next_n_calls_then_normal_answers_resume(orch, http):
    orch.fail_next(Endpoint.PROGRESS, Fault.answer(503), times=2)
    codes = [http.post("/internal/videogen/jobs/j/progress", json={}).status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_clear_faults_disarms_what_is_left(orch, http):
    orch.fail_next(Endpoint.PROGRESS, Fault.answer(500), times=5)
    orch.fail_next(Endpoint.HEARTBEAT, Fault.answer(500), times=5)
    orch.clear_faults(Endpoint.PROGRESS)
    assert http.post("/internal/videogen/jobs/j/progress", json={}).status_code == 200
    assert http.post("/internal/buffer/workers/w/heartbeat", json={}).status_code == 500
    orch.clear_faults()
    assert http.post("/internal/buffer/workers/w/heartbeat", json={}).status_code == 200


def test_a_delay_fault_holds_the_answer(orch, http):
    orch.fail_next(Endpoint.HEARTBEAT, Fault.delayed(0.3))
    started = time.monotonic()
    answer = http.post("/internal/buffer/workers/w-1/heartbeat", json={"status": "idle"})
    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_a_delay_longer_than_the_client_timeout_times_the_client_out(orch):
    orch.fail_next(Endpoint.HEARTBEAT, Fault.delayed(1.0))
    with httpx.Client(base_url=orch.url, timeout=0.1) as client, pytest.raises(httpx.ReadTimeout):
        client.post("/internal/buffer/workers/w-1/heartbeat", json={"status": "idle"})


def test_a_dropped_connection_answers_nothing_and_is_recorded_so(orch, http):
    orch.fail_next(Endpoint.CLAIM, Fault.dropped())
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(CLAIM, json={"worker_id": "w-1"})
    assert orch.requests(Endpoint.CLAIM)[0].answer is None
    assert http.post(CLAIM, json={"worker_id": "w-1"}).status_code == 200


def test_a_dripped_answer_arrives_whole_but_slowly_and_outlasts_a_per_read_timeout(orch):
    orch.add_job(JOB)
    orch.fail_next(Endpoint.CLAIM, Fault.dripped(0.01))
    started = time.monotonic()

    # Each byte comes well within the read timeout: httpx waits for the whole answer.
    with httpx.Client(base_url=orch.url, headers={"X-Internal-API-Key": orch.api_key}, timeout=0.5) as client:
        answer = client.post(CLAIM, json={"worker_id": "w-1"})

    assert answer.status_code == 200 and answer.json()["job"]["musetalk_job_id"] == "job-1"
    assert time.monotonic() - started > 0.01 * 60  # well over a hundred bytes, one at a time
    assert orch.requests(Endpoint.CLAIM)[0].answer == 200


def test_a_standing_refusal_answers_one_jobs_or_one_statuss_calls_until_cleared(orch, http):
    refused, other = orch.add_job(JOB), orch.add_job({**JOB, "musetalk_job_id": "job-2"})
    http.post(CLAIM, json={"worker_id": "w-1"})
    http.post(CLAIM, json={"worker_id": "w-1"})
    orch.refuse(503, buffer_job_id=refused)
    orch.refuse(500, status="running")

    codes = [
        http.post(status_path(refused), json={"status": "succeeded"}).status_code,
        http.post(status_path(refused), json={"status": "succeeded"}).status_code,
        http.post(status_path(other), json={"status": "running"}).status_code,
        http.post(status_path(other), json={"status": "succeeded"}).status_code,
    ]
    orch.clear_refusals()
    codes.append(http.post(status_path(refused), json={"status": "succeeded"}).status_code)

    assert codes == [503, 503, 500, 200, 200]
    assert orch.terminal_statuses(refused) == [{"status": "succeeded"}]
    assert orch.statuses(other) == [{"status": "succeeded"}]
    with pytest.raises(ValueError, match="buffer_job_id, a status or both"):
        orch.refuse(500)


def test_a_job_handed_out_again_is_claimed_again_and_open_for_a_status(orch, http):
    buffer_job_id = orch.add_job(JOB)
    http.post(CLAIM, json={"worker_id": "w-1"})
    http.post(status_path(buffer_job_id), json={"status": "succeeded", "worker_id": "w-1"})

    orch.hand_out_again(buffer_job_id)
    again = http.post(CLAIM, json={"worker_id": "w-2"}).json()["job"]
    answer = http.post(status_path(buffer_job_id), json={"status": "succeeded", "worker_id": "w-2"})

    assert again == {**JOB, "buffer_job_id": buffer_job_id}
    assert answer.status_code == 200
    assert len(orch.terminal_statuses(buffer_job_id)) == 2


def test_unknown_paths_methods_and_bodies(orch, http):
    assert http.post("/internal/nothing", json={}).status_code == 404
    assert http.get(CLAIM).status_code == 405
    assert (
        http.post(CLAIM, content=b"{not json", headers={"Content-Type": "application/json"}).status_code
        == 422
    )
    assert http.post(CLAIM, json={"no_worker_id": 1}).status_code == 422


def test_concurrent_claims_hand_out_each_job_exactly_once(orch):
    ids = {orch.add_job({**JOB, "musetalk_job_id": f"job-{n}"}) for n in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(worker_id: str) -> None:
        with httpx.Client(base_url=orch.url, headers={"X-Internal-API-Key": orch.api_key}) as client:
            while (job := client.post(CLAIM, json={"worker_id": worker_id}).json()["job"]) is not None:
                with lock:
                    claimed.append(job["buffer_job_id"])

    threads = [threading.Thread(target=worker, args=(f"w-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(claimed) == sorted(ids)


def test_wait_for_returns_once_a_background_request_arrives(orch):
    def later() -> None:
        time.sleep(0.05)
        httpx.post(f"{orch.url}/internal/buffer/workers/w-9/heartbeat", json={"status": "idle"})

    threading.Thread(target=later).start()
    assert orch.wait_for(lambda o: len(o.heartbeats("w-9")) == 1, timeout=5)
    assert not orch.wait_for(lambda o: len(o.heartbeats("w-9")) == 2, timeout=0.05)


def test_url_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="not started"):
        _ = OrchestratorDouble().url


# -- lease rules (opt-in) -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def leased(clock):
    with OrchestratorDouble(lease=LeaseRules(heartbeat_interval_s=1.0, intervals=3), clock=clock) as double:
        yield double


@pytest.fixture
def leased_http(leased):
    with httpx.Client(
        base_url=leased.url, headers={"X-Internal-API-Key": leased.api_key}, timeout=2.0
    ) as client:
        yield client


def beat(http, worker_id: str, current_job_id: str | None) -> None:
    body = {"status": "busy" if current_job_id else "idle", "current_job_id": current_job_id}
    assert http.post(f"/internal/buffer/workers/{worker_id}/heartbeat", json=body).status_code == 200


def test_without_lease_rules_a_silent_workers_job_stays_claimed(orch, http):
    buffer_job_id = orch.add_job(JOB)
    http.post(CLAIM, json={"worker_id": "w-1"})
    assert orch.expire_leases() == []
    assert orch.job_state(buffer_job_id) == "claimed"
    assert [(c.number, c.worker_id, c.open) for c in orch.claims_of(buffer_job_id)] == [(1, "w-1", True)]


def test_heartbeats_naming_the_job_keep_its_lease_and_silence_gives_it_back(leased, leased_http, clock):
    buffer_job_id = leased.add_job(JOB)
    leased_http.post(CLAIM, json={"worker_id": "w-1"})
    for _ in range(5):  # five intervals, each with a heartbeat that names the job: still held
        clock.now += 1.0
        beat(leased_http, "w-1", buffer_job_id)
    assert leased.job_state(buffer_job_id) == "claimed"

    clock.now += 2.0
    beat(leased_http, "w-2", None)  # another worker's news renews nothing
    beat(leased_http, "w-1", None)  # nor does its own heartbeat without the job (it lost it)
    assert leased.expire_leases() == []
    clock.now += 1.5
    assert leased.expire_leases() == [buffer_job_id]

    assert leased.job_state(buffer_job_id) == "queued"
    (claim,) = leased.claims_of(buffer_job_id)
    assert (claim.status, claim.taken_back) == (None, "lease expired")
    late = leased_http.post(status_path(buffer_job_id), json={"status": "succeeded", "worker_id": "w-1"})
    assert late.status_code == 409
    again = leased_http.post(CLAIM, json={"worker_id": "w-2"}).json()["job"]
    assert again["buffer_job_id"] == buffer_job_id
    done = leased_http.post(status_path(buffer_job_id), json={"status": "succeeded", "worker_id": "w-2"})
    assert done.status_code == 200
    assert [(c.worker_id, c.status, c.taken_back) for c in leased.claims_of(buffer_job_id)] == [
        ("w-1", None, "lease expired"),
        ("w-2", "succeeded", None),
    ]
    assert [(s["status"], s["worker_id"]) for s in leased.statuses(buffer_job_id, recorded_only=False)] == [
        ("succeeded", "w-1"),
        ("succeeded", "w-2"),
    ]


def test_a_lease_runs_out_before_a_request_is_answered_so_the_late_status_gets_409(
    leased, leased_http, clock
):
    buffer_job_id = leased.add_job(JOB)
    leased_http.post(CLAIM, json={"worker_id": "w-1"})
    clock.now += 3.5  # the worker was killed; nobody asked the double anything meanwhile

    answer = leased_http.post(status_path(buffer_job_id), json={"status": "failed", "worker_id": "w-1"})

    assert answer.status_code == 409
    assert leased.job_state(buffer_job_id) == "queued"


def test_the_running_status_renews_the_lease(leased, leased_http, clock):
    buffer_job_id = leased.add_job(JOB)
    leased_http.post(CLAIM, json={"worker_id": "w-1"})
    clock.now += 2.5
    running = {"status": "running", "worker_id": "w-1"}
    assert leased_http.post(status_path(buffer_job_id), json=running).status_code == 200
    clock.now += 2.5
    assert leased.expire_leases() == []
    clock.now += 1.0
    assert leased.expire_leases() == [buffer_job_id]


def test_a_retryable_failure_ends_the_claim_and_queues_the_job_again_up_to_max_claims(clock):
    rules = LeaseRules(heartbeat_interval_s=1.0, max_claims=2)
    with (
        OrchestratorDouble(lease=rules, clock=clock) as leased,
        httpx.Client(base_url=leased.url, headers={"X-Internal-API-Key": leased.api_key}) as http,
    ):
        buffer_job_id = leased.add_job(JOB)
        failure = {"status": "failed", "retryable": True, "error_code": "worker_shutdown"}
        for worker_id in ("w-1", "w-2"):
            assert http.post(CLAIM, json={"worker_id": worker_id}).json()["job"] is not None
            body = {**failure, "worker_id": worker_id}
            assert http.post(status_path(buffer_job_id), json=body).status_code == 200

        assert http.post(CLAIM, json={"worker_id": "w-3"}).json()["job"] is None
        assert leased.job_state(buffer_job_id) == "failed"
        assert [(c.worker_id, c.status) for c in leased.claims_of(buffer_job_id)] == [
            ("w-1", "failed"),
            ("w-2", "failed"),
        ]


def test_a_non_retryable_failure_or_a_success_is_final(leased, leased_http):
    for status, retryable in (("failed", False), ("succeeded", None), ("cancelled", False)):
        buffer_job_id = leased.add_job({**JOB, "musetalk_job_id": f"job-{status}"})
        leased_http.post(CLAIM, json={"worker_id": "w-1"})
        body = {"status": status, "retryable": retryable, "worker_id": "w-1"}
        assert leased_http.post(status_path(buffer_job_id), json=body).status_code == 200
        assert leased.job_state(buffer_job_id) == status
    assert leased_http.post(CLAIM, json={"worker_id": "w-1"}).json()["job"] is None


def test_take_back_queues_a_held_job_now_and_its_holder_gets_409(leased, leased_http):
    buffer_job_id = leased.add_job(JOB)
    assert not leased.take_back(buffer_job_id)  # not held: nothing to take back
    leased_http.post(CLAIM, json={"worker_id": "w-1"})

    assert leased.take_back(buffer_job_id)

    running = leased_http.post(status_path(buffer_job_id), json={"status": "running", "worker_id": "w-1"})
    assert running.status_code == 409
    assert leased.claims_of(buffer_job_id)[0].taken_back == "taken back"
    assert leased.job_ids() == [buffer_job_id]
