"""The job's life: legal transitions only, monotonic progress, one terminal state."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastwan_core import IllegalTransition, JobLifecycle, JobState, Phase, Stage


def running() -> JobLifecycle:
    run = JobLifecycle("j1")
    run.start()
    return run


def test_a_full_life() -> None:
    run = running()
    seen = [run.progress]
    for stage in Stage:
        run.enter(stage)
        seen.append(run.progress)
        run.advance(0.5)
        seen.append(run.progress)
    run.succeed()
    seen.append(run.progress)
    assert seen == sorted(seen)
    assert run.state is JobState.SUCCEEDED and run.progress == 1.0


def test_stages_may_be_skipped_but_never_revisited() -> None:
    run = running()
    run.enter(Stage.TEXT_ENCODE)  # text-to-video skips downloading
    with pytest.raises(IllegalTransition, match="cannot go from text_encode to download"):
        run.enter(Stage.DOWNLOAD)
    with pytest.raises(IllegalTransition):
        run.enter(Stage.TEXT_ENCODE)


def test_each_stage_says_its_phase_in_the_contracts_words() -> None:
    run = running()
    phases = []
    for stage in Stage:
        run.enter(stage)
        phases.append(run.phase)
    assert phases == [
        Phase.DOWNLOADING,
        Phase.INFERENCE,
        Phase.INFERENCE,
        Phase.DECODING,
        Phase.ENCODING,
        Phase.UPLOADING,
    ]


@pytest.mark.parametrize("end", [JobLifecycle.succeed, JobLifecycle.fail, JobLifecycle.cancel])
def test_exactly_one_terminal_state(end: object) -> None:
    run = running()
    end(run)  # type: ignore[operator]
    for other in (JobLifecycle.succeed, JobLifecycle.fail, JobLifecycle.cancel):
        with pytest.raises(IllegalTransition, match="already"):
            other(run)
    with pytest.raises(IllegalTransition):
        run.enter(Stage.UPLOAD)


def test_nothing_before_start() -> None:
    run = JobLifecycle("j1")
    with pytest.raises(IllegalTransition, match="cannot enter denoise while pending"):
        run.enter(Stage.DENOISE)
    run.start()
    with pytest.raises(IllegalTransition, match="cannot start while running"):
        run.start()
    with pytest.raises(IllegalTransition, match="advance before any stage"):
        run.advance(0.5)


@given(st.lists(st.tuples(st.sampled_from(list(Stage)), st.floats(-1, 2)), max_size=20))
def test_progress_is_monotonic_in_0_1(moves: list[tuple[Stage, float]]) -> None:
    run = running()
    last = run.progress
    for stage, fraction in moves:
        with contextlib.suppress(IllegalTransition):
            run.enter(stage)
        if run.stage is not None:
            run.advance(fraction)
        assert last <= run.progress < 1.0
        last = run.progress
    run.fail()
    assert 0.0 <= run.progress < 1.0
