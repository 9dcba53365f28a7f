"""The generation plan, property-tested over all valid jobs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given

from fastwan_core import FASTWAN_TIMESTEPS, Job, Size, plan_generation
from fastwan_core.plan import MODEL_PIXEL_BUDGET, TRAINED_SIZES, model_size_for, trained_size_for

from .strategies import valid_jobs


@given(valid_jobs)
def test_plan_properties_hold_for_every_valid_job(job: Job) -> None:
    plan = plan_generation(job)
    generated = plan.generated_size
    assert generated.width % 32 == 0 and generated.height % 32 == 0
    assert generated.pixels <= MODEL_PIXEL_BUDGET
    assert plan.output_size == Size(job.width, job.height)
    assert plan.num_frames == job.num_frames and (plan.num_frames - 1) % 4 == 0
    assert plan.timesteps == (1000, 757, 522) and plan.steps == 3
    assert plan.seed == job.seed and plan.fps == job.fps
    assert plan.guidance_scale == 1.0
    if trained_size_for(plan.output_size) is not None:
        # Near a trained size: exactly that size, each side within 5%, delivered by cover + crop.
        assert generated in TRAINED_SIZES
        assert abs(generated.width - job.width) <= 0.05 * generated.width
        assert abs(generated.height - job.height) <= 0.05 * generated.height
        assert plan.cover is (generated != plan.output_size)
        return
    assert plan.cover is False
    # Never larger than asked for (beyond rounding up to the next multiple of 32).
    assert generated.width < job.width + 32 and generated.height < job.height + 32
    # The aspect is as close as rounding each side to 32 pixels allows.
    error = abs(math.log(generated.width / generated.height) - math.log(job.width / job.height))
    worst = math.log((job.width + 32) / max(job.width - 32, 1)) + math.log(
        (job.height + 32) / max(job.height - 32, 1)
    )
    assert error <= worst


@given(valid_jobs)
def test_a_request_that_fits_is_generated_as_is(job: Job) -> None:
    if job.width % 32 or job.height % 32 or job.width * job.height > MODEL_PIXEL_BUDGET:
        return
    if trained_size_for(job.requested_size) is not None:
        return  # near a trained size: that size wins (test_known_sizes)
    assert plan_generation(job).generated_size == Size(job.width, job.height)


def test_whatever_steps_says_the_distilled_schedule_runs() -> None:
    for steps in (1, 4, 50):
        job = Job(musetalk_job_id="j", prompt="p", steps=steps)
        assert plan_generation(job).timesteps == FASTWAN_TIMESTEPS


@pytest.mark.parametrize(
    ("requested", "generated", "cover"),
    [
        # Within 5% of a trained size on each side: exactly that size, then cover + crop.
        (Size(720, 1280), Size(704, 1280), True),  # the default job
        (Size(1280, 720), Size(1280, 704), True),
        (Size(736, 1248), Size(704, 1280), True),  # 4.5% wider, 2.5% shorter
        (Size(739, 1280), Size(704, 1280), True),  # 704 * 1.05 = 739.2: the edge
        (Size(704, 1280), Size(704, 1280), False),  # the model's own sizes, as they are
        (Size(1280, 704), Size(1280, 704), False),
        # Anything else: the supported size nearest in aspect, resized as before.
        (Size(740, 1280), Size(704, 1248), False),  # just past 5%
        (Size(576, 1024), Size(576, 1024), False),  # fits: as it is
        (Size(512, 512), Size(512, 512), False),  # 1:1
        (Size(1280, 1280), Size(928, 928), False),  # 1:1, over the budget
        (Size(1111, 333), Size(1088, 320), False),  # an odd aspect
        (Size(257, 319), Size(256, 320), False),
    ],
)
def test_known_sizes(requested: Size, generated: Size, cover: bool) -> None:
    assert model_size_for(requested) == generated
    plan = plan_generation(
        Job(musetalk_job_id="j", prompt="p", width=requested.width, height=requested.height)
    )
    assert (plan.generated_size, plan.output_size, plan.cover) == (generated, requested, cover)
