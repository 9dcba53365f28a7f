"""FastWan's distilled sampling as a diffusers scheduler, so the stock Wan pipelines run it.

FastWan 2.2 was distilled (DMD) for three fixed timesteps, 1000, 757 and 522, with sigma =
t / 1000. Each step the transformer's flow prediction ``v`` gives the clean latent
``x0 = x - sigma * v``; the next step starts from ``x0`` re-noised to the next sigma with
fresh Gaussian noise, and the last step keeps ``x0``. No classifier-free guidance.

diffusers' ``FlowMatchEulerDiscreteScheduler`` with ``stochastic_sampling=True`` and
``shift=1`` performs exactly this update, but neither Wan pipeline passes the schedule or a
random generator to it: the pipelines ask for ``num_inference_steps`` evenly spaced steps and
the re-noising would draw from torch's global RNG. This subclass fixes both: the schedule
and the job's ``torch.Generator`` are set per job with :meth:`DistilledFlowScheduler.prepare`,
so the same job and seed give the same video whatever else the process did. The update is
computed in fp32 and the latents stay fp32 between steps (the stock step casts them back
to the transformer's bf16).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, cast

import torch
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler

from fastwan_core.plan import FASTWAN_TIMESTEPS

__all__ = ["NUM_TRAIN_TIMESTEPS", "DistilledFlowScheduler", "job_generator"]

NUM_TRAIN_TIMESTEPS: Final = 1000


def job_generator(seed: int) -> torch.Generator:
    """The job's random generator: on the CPU, so a seed gives the same noise on every GPU."""
    return torch.Generator(device="cpu").manual_seed(seed)


class DistilledFlowScheduler(FlowMatchEulerDiscreteScheduler):
    """Flow-matching scheduler running a fixed timestep schedule with per-job seeded re-noising."""

    @classmethod
    def create(cls) -> DistilledFlowScheduler:
        """The scheduler FastWan was distilled for: no shift, re-noising steps."""
        # diffusers' ``register_to_config`` leaves the constructor untyped.
        return cast(
            DistilledFlowScheduler,
            cls(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=1.0, stochastic_sampling=True),
        )

    def prepare(self, timesteps: Sequence[int], generator: torch.Generator) -> None:
        """Set the schedule and the noise source for the next run."""
        if not timesteps or any(not 0 < t <= NUM_TRAIN_TIMESTEPS for t in timesteps):
            raise ValueError(f"timesteps must be in 1..{NUM_TRAIN_TIMESTEPS}, got {list(timesteps)}")
        if list(timesteps) != sorted(timesteps, reverse=True):
            raise ValueError(f"timesteps must decrease, got {list(timesteps)}")
        self._schedule = tuple(timesteps)
        self._noise: torch.Generator | None = generator

    def release(self) -> None:
        """Forget the job's generator once the run is over."""
        self._noise = None

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
        timesteps: list[float] | None = None,
    ) -> None:
        """Install the prepared schedule; the pipeline's step count must agree with it."""
        schedule = self._prepared_schedule()
        if num_inference_steps is not None and num_inference_steps != len(schedule):
            raise ValueError(
                f"the distilled schedule has {len(schedule)} steps, "
                f"the pipeline asked for {num_inference_steps}"
            )
        if sigmas is not None or timesteps is not None:
            raise ValueError(
                "the distilled schedule is fixed: pass the timesteps to prepare(), not set_timesteps()"
            )
        super().set_timesteps(
            device=device,  # type: ignore[arg-type]  # diffusers: `device: str | device = None`
            sigmas=[t / NUM_TRAIN_TIMESTEPS for t in schedule],
            timesteps=[float(t) for t in schedule],
        )

    def step(
        self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, *args: Any, **kwargs: Any
    ) -> Any:
        """The DMD update in fp32, re-noising from the job's generator."""
        if kwargs.get("generator") is None:
            kwargs["generator"] = getattr(self, "_noise", None)
        if kwargs["generator"] is None:
            raise RuntimeError(
                "DistilledFlowScheduler.step before prepare(): no generator for the re-noising"
            )
        # diffusers annotates the tensors as the legacy ``torch.FloatTensor``, which no Tensor is to mypy.
        return super().step(model_output.float(), timestep, sample.float(), *args, **kwargs)  # type: ignore[arg-type]

    def _prepared_schedule(self) -> tuple[int, ...]:
        schedule: tuple[int, ...] = getattr(self, "_schedule", FASTWAN_TIMESTEPS)
        return schedule
