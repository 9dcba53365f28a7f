"""The chaos run's rules, each against ledgers that break it: a check that never fails proves
nothing, so every rule is shown failing here on the history it must catch."""

from __future__ import annotations

from chaos_checks import (
    BufferRecord,
    ClaimView,
    ProgressCall,
    QueueAttempt,
    QueueRecord,
    RssLife,
    StatusCall,
    check_buffer_job,
    check_final_words,
    check_heartbeat_gaps,
    check_queue_job,
    check_rss,
    rerun_causes,
    second_half_growth,
)

FINAL = frozenset({"succeeded", "failed", "cancelled"})


def status(
    at: float, word: str, worker: str, answer: int = 200, code: str | None = None, **more
) -> StatusCall:
    retryable = more.get("retryable", code in ("worker_shutdown", "internal_error") if code else None)
    return StatusCall(at, word, worker, answer, code, retryable, more.get("output_url"))


def buffer_record(claims, statuses, progress=(), state="succeeded", invalid=False) -> BufferRecord:
    return BufferRecord("b-1", "job-1", invalid, list(claims), list(statuses), list(progress), state)


def rules(violations) -> list[str]:
    return [v.rule for v in violations]


# -- final words --------------------------------------------------------------------------------


def test_failed_progress_after_succeeded_is_a_contradiction_the_known_bug():
    progress = [
        ProgressCall(5.0, "succeeded", "w-2"),
        ProgressCall(9.0, "failed", "w-1", "worker_shutdown"),  # the late restart's orphan
    ]

    (violation,) = check_final_words("b-1", [], progress)

    assert violation.contradiction
    assert (
        "failed/worker_shutdown (progress from w-1) after succeeded (progress from w-2)" in violation.detail
    )


def test_a_retryable_failure_may_be_followed_by_a_success_but_a_final_word_by_nothing_else():
    retried = [ProgressCall(1.0, "failed", "w-1", "worker_shutdown"), ProgressCall(4.0, "succeeded", "w-2")]
    again = [ProgressCall(1.0, "succeeded", "w-1"), ProgressCall(4.0, "succeeded", "w-2")]
    cancelled_then_done = [
        ProgressCall(1.0, "cancelled", "q-1", "cancelled"),
        ProgressCall(4.0, "succeeded", "q-2"),
    ]
    invalid_then_done = [
        ProgressCall(1.0, "failed", "w-1", "invalid_input"),
        ProgressCall(2.0, "succeeded", "w-2"),
    ]

    assert check_final_words("j", [], retried) == []
    assert check_final_words("j", [], again) == []
    assert rules(check_final_words("j", [], cancelled_then_done)) == [
        "contradiction: final word contradicted"
    ]
    assert rules(check_final_words("j", [], invalid_then_done)) == ["contradiction: final word contradicted"]


def test_statuses_count_only_when_recorded_and_mix_with_progress_by_time():
    statuses = [
        status(1.0, "succeeded", "w-1"),
        status(3.0, "failed", "w-2", answer=409, code="worker_shutdown"),  # refused: not a word said
    ]
    assert check_final_words("j", statuses, []) == []
    late = [ProgressCall(2.0, "cancelled", "w-2", "cancelled")]
    assert rules(check_final_words("j", statuses, late)) == ["contradiction: final word contradicted"]


# -- buffer jobs ----------------------------------------------------------------------------------


def test_a_claim_not_taken_back_must_end_with_a_recorded_status():
    claims = [ClaimView(1, "w-1", 1.0, None, None), ClaimView(2, "w-2", 5.0, "succeeded", None)]
    statuses = [status(6.0, "succeeded", "w-2")]

    assert rules(check_buffer_job(buffer_record(claims, statuses), final_states=FINAL)) == [
        "one terminal status per claim"
    ]
    taken_back = [ClaimView(1, "w-1", 1.0, None, "lease expired"), claims[1]]
    assert check_buffer_job(buffer_record(taken_back, statuses), final_states=FINAL) == []


def test_a_worker_that_sends_two_different_ends_for_one_claim_contradicts_itself():
    claims = [ClaimView(1, "w-1", 1.0, "succeeded", None)]
    statuses = [
        status(2.0, "succeeded", "w-1"),
        status(3.0, "failed", "w-1", answer=409, code="internal_error"),
    ]

    violations = check_buffer_job(buffer_record(claims, statuses), final_states=FINAL)

    assert rules(violations) == ["contradiction: two ends for one claim"]
    assert violations[0].contradiction


def test_a_resent_status_after_a_crash_is_the_same_end_not_a_contradiction():
    claims = [ClaimView(1, "w-1", 1.0, "succeeded", None)]
    statuses = [status(2.0, "succeeded", "w-1"), status(9.0, "succeeded", "w-1", answer=409)]
    assert check_buffer_job(buffer_record(claims, statuses), final_states=FINAL) == []


def test_a_job_not_ended_at_the_end_is_lost():
    claims = [ClaimView(1, "w-1", 1.0, None, "lease expired")]
    (violation,) = check_buffer_job(buffer_record(claims, [], state="queued"), final_states=FINAL)
    assert violation.rule == "lost" and "ended queued after 1 claim(s)" in violation.detail


def test_an_invalid_job_ends_invalid_input_once_and_is_never_handed_out_again():
    once = [ClaimView(1, "w-1", 1.0, "failed", None)]
    refused = [status(1.5, "failed", "w-1", code="invalid_input", retryable=False)]
    assert (
        check_buffer_job(buffer_record(once, refused, state="failed", invalid=True), final_states=FINAL) == []
    )

    again = [*once, ClaimView(2, "w-2", 4.0, "failed", None)]
    twice = [*refused, status(4.5, "failed", "w-2", code="invalid_input", retryable=False)]
    record = buffer_record(again, twice, state="failed", invalid=True)
    assert "invalid job ends invalid_input once" in rules(check_buffer_job(record, final_states=FINAL))

    ran = [status(1.5, "succeeded", "w-1")]
    record = buffer_record([ClaimView(1, "w-1", 1.0, "succeeded", None)], ran, invalid=True)
    assert rules(check_buffer_job(record, final_states=FINAL)) == ["invalid job ends invalid_input once"]


# -- queue jobs -----------------------------------------------------------------------------------


def attempt(number, outcome, code=None, body=None, node="q0") -> QueueAttempt:
    return QueueAttempt(number, node, float(number), float(number) + 0.5, outcome, code, body)


def queue_record(attempts, state="completed", invalid=False, progress=()) -> QueueRecord:
    return QueueRecord("salad-1", "job-q", invalid, state, list(attempts), list(progress))


SUCCEEDED = {"status": "succeeded", "output_url": "x"}
SHUTDOWN = {"status": "failed", "error_code": "worker_shutdown", "retryable": True}


def test_a_queue_job_retried_after_a_retry_code_or_a_drop_then_completed_once_is_fine():
    record = queue_record(
        [
            attempt(1, "rejected", 503, SHUTDOWN),
            attempt(2, "stopped"),
            attempt(3, "completed", 200, SUCCEEDED),
        ]
    )
    assert check_queue_job(record) == []


def test_a_queue_job_that_never_completed_or_ran_after_completing_breaks_the_rules():
    exhausted = queue_record([attempt(n, "dropped") for n in range(1, 5)], state="failed")
    assert rules(check_queue_job(exhausted)) == ["completes once"]
    pending = queue_record([attempt(1, "stopped")], state="pending")
    assert rules(check_queue_job(pending)) == ["lost"]
    ran_on = queue_record([attempt(1, "completed", 200, SUCCEEDED), attempt(2, "completed", 200, SUCCEEDED)])
    assert "retried only after a retry code or a drop" in rules(check_queue_job(ran_on))


def test_an_answers_status_code_must_agree_with_its_body():
    lying_ok = queue_record([attempt(1, "completed", 200, {"status": "failed", "retryable": False})])
    retry_final = queue_record(
        [
            attempt(1, "rejected", 503, {"status": "failed", "retryable": False}),
            attempt(2, "completed", 200, SUCCEEDED),
        ]
    )
    final_retry = queue_record([attempt(1, "completed", 400, {"status": "failed", "retryable": True})])
    invalid = queue_record(
        [
            attempt(
                1, "completed", 422, {"status": "failed", "error_code": "invalid_input", "retryable": False}
            )
        ],
        invalid=True,
    )
    gone = queue_record([attempt(1, "completed", 499, None), attempt(2, "completed", 200, SUCCEEDED)])

    for record in (lying_ok, retry_final, final_retry):
        assert "answer code agrees with its body" in rules(check_queue_job(record)), record
    assert check_queue_job(invalid) == []
    assert "answer code agrees with its body" not in rules(check_queue_job(gone))


def test_an_invalid_queue_job_must_be_answered_422_invalid_input():
    ran = queue_record([attempt(1, "completed", 200, SUCCEEDED)], invalid=True)
    assert rules(check_queue_job(ran)) == ["invalid job ends invalid_input once"]


def test_cancelled_progress_from_a_dropped_request_then_succeeded_is_a_contradiction():
    progress = [
        ProgressCall(1.0, "cancelled", "chaos-q0", "cancelled"),
        ProgressCall(3.0, "succeeded", "chaos-q1"),
    ]
    record = queue_record([attempt(1, "stopped"), attempt(2, "completed", 200, SUCCEEDED)], progress=progress)
    assert [v.contradiction for v in check_queue_job(record)] == [True]


# -- re-runs, memory, heartbeats -------------------------------------------------------------------


def test_re_runs_are_counted_by_how_the_run_before_ended():
    claims = [
        ClaimView(1, "w-1", 1.0, None, "lease expired"),
        ClaimView(2, "w-2", 5.0, "failed", None),
        ClaimView(3, "w-1", 9.0, "succeeded", None),
    ]
    statuses = [status(6.0, "failed", "w-2", code="worker_shutdown"), status(10.0, "succeeded", "w-1")]
    queued = queue_record(
        [
            attempt(1, "rejected", 503, SHUTDOWN),
            attempt(2, "dropped"),
            attempt(3, "completed", 200, SUCCEEDED),
        ]
    )

    causes = rerun_causes([buffer_record(claims, statuses)], [queued])

    assert causes == {"lease expired": 1, "failed/worker_shutdown": 1, "503 worker_shutdown": 1, "dropped": 1}


def test_memory_beyond_the_bound_is_flagged_and_a_long_lifes_second_half_growth_reported():
    lives = [
        RssLife("warm", 500.0, None, 800.0, 12),  # 1.6x: the allocator's plateau
        RssLife("bloated", 500.0, None, 1000.0, 12),
        RssLife("one job", 500.0, None, 2000.0, 1),  # nothing to compare with
        RssLife("long", 500.0, 700.0, 860.0, 40),
        RssLife("flat", 500.0, 800.0, 830.0, 40),
    ]
    found = check_rss(lives, ratio=1.75, slack_mib=64.0)
    assert [(v.subject, v.rule) for v in found] == [
        ("bloated", "RSS within a bound of its RSS after its first job")
    ]
    assert second_half_growth(lives) == 160.0
    assert second_half_growth(lives[:3]) is None


def test_a_heartbeat_gap_over_twice_the_interval_is_flagged_unless_excused():
    arrivals = [0.0, 5.0, 6.0, 7.0, 9.5, 10.5]  # 0 -> 5: start-up, never checked
    found = check_heartbeat_gaps("w-1", arrivals, interval_s=1.0, excused=lambda a, b: False)
    assert [v.detail for v in found] == ["2.50 s (interval 1 s)"]
    assert check_heartbeat_gaps("w-1", arrivals, interval_s=1.0, excused=lambda a, b: a >= 7.0) == []
