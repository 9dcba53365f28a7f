"""One generation run: the three stages in order, timed, and a failure turned into the job's answer.

The generator runs the stages itself so that each is reported and timed on its own: the prompt
is encoded first (its embeddings cached by model and prompt), the pipeline then only denoises
(``output_type="latent"``, ``denoising``), and the VAE decode follows, chunk by chunk, into the
use case's frame sink. A cancellation or a job failure is handed back as it is; any other error
is classified (``failures``: out of memory, a CUDA error that left the GPU unusable, or
anything else) and logged, never raised, so that the caller releases the memory outside the
except clause.
"""

from __future__ import annotations

import logging
import time

import attrs
import torch

from fastwan_adapters.generator.denoising import denoise
from fastwan_adapters.generator.device import gpu_usable, peak_memory_gib, reset_peak_memory
from fastwan_adapters.generator.failures import classify_failure
from fastwan_adapters.generator.pipelines import Pipelines
from fastwan_adapters.generator.profiles import MemoryProfile
from fastwan_adapters.generator.prompt_cache import PromptCache
from fastwan_adapters.generator.prompts import encode_prompt
from fastwan_adapters.generator.settings import GeneratorSettings
from fastwan_adapters.generator.vsa import AttentionChoice
from fastwan_core.errors import JobCancelled, JobFailure
from fastwan_core.plan import GenerationPlan
from fastwan_core.ports import FrameSink, GeneratedVideo, GenerationEvents, Picture, Stage

__all__ = ["GenerationStages"]

# The logger's name as before the run moved out of the generator: the ``logger`` field of its log lines.
log = logging.getLogger("fastwan_adapters.generator.diffusers_generator")


@attrs.frozen
class GenerationStages:
    """A loaded model's three stages, run for one job at a time (the generator holds the lock).

    Attributes:
        pipelines: the modules; dropped with this object when the generator closes.
        settings: ``FASTWAN_MODEL`` keys the prompt cache; ``FASTWAN_VAE_DECODER`` is reported.
        profile, attention: the memory profile and self-attention in force, as reported.
        prompt_cache: the prompt embeddings of this model, by prompt.
    """

    pipelines: Pipelines
    device: torch.device
    settings: GeneratorSettings
    profile: MemoryProfile
    attention: AttentionChoice
    prompt_cache: PromptCache

    def attempt(
        self, plan: GenerationPlan, image: Picture | None, events: GenerationEvents, sink: FrameSink
    ) -> GeneratedVideo | Exception:
        """Run ``plan`` once: the video made, or the cancellation or failure that ended the run."""
        started = time.perf_counter()
        reset_peak_memory(self.device)
        try:
            cache = self._run(plan, image, events, sink)
        except (JobCancelled, JobFailure) as stop:
            return stop.with_traceback(None)
        except Exception as error:
            failure = classify_failure(error, plan, self.profile.name, lambda: gpu_usable(self.device))
            log.warning(
                "generation failed (%s%s): %s",
                failure.code.value,
                ", fatal" if failure.fatal else "",
                failure.message,
                exc_info=not isinstance(error, torch.cuda.OutOfMemoryError),
            )
            return failure
        finally:
            self.pipelines.scheduler.release()
        peak = peak_memory_gib(self.device)
        log.info(
            "generated %d frames at %s (%s) in %.2f s, peak GPU memory %.2f GiB",
            plan.num_frames,
            plan.generated_size,
            "I2V" if image is not None else "T2V",
            time.perf_counter() - started,
            peak,
        )
        return GeneratedVideo(
            peak_vram_gb=peak,
            vae_decoder=self.settings.vae_decoder,
            prompt_cache=cache,
            attention=self.attention.kind,
            vsa_sparsity=self.attention.sparsity,
        )

    @torch.no_grad()
    def _run(
        self, plan: GenerationPlan, image: Picture | None, events: GenerationEvents, sink: FrameSink
    ) -> str | None:
        """The stages, the frames into ``sink``; returns the prompt cache's answer."""
        pipelines = self.pipelines
        events.stage(Stage.TEXT_ENCODE)
        prompt_embeds, cache = encode_prompt(
            pipelines.t2v, plan.prompt, self.device, self.prompt_cache, self.settings.model
        )
        events.stage(Stage.DENOISE)
        events.check_cancelled()
        pipeline = pipelines.t2v if image is None else pipelines.i2v
        latents = denoise(
            pipeline, pipelines.scheduler, plan, image=image, prompt_embeds=prompt_embeds, events=events
        )
        events.stage(Stage.DECODE)
        pipelines.decoder.deliver(plan, latents, events.check_cancelled, sink)
        return cache
