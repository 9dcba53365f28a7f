"""Which latent space a tiny decoder file expects: the pipeline's (normalised) or ``vae.decode``'s.

The published TAEHV-format Wan 2.2 decoders share one layout and one key set, so nothing in
the weights tells them apart; what they were trained on differs:

* madebyollin/taehv's ``taew2_2`` (and ``taew2_2_super``) decodes exactly what the diffusion
  model makes, the normalised latents a Wan pipeline returns with ``output_type="latent"``
  (taehv's README: "TAEHV does not use any latent scales / shifts").
* LightX2V's ``lighttaew2_2`` (``lightx2v/Autoencoders``) was retrained on the de-normalised
  latents the full VAE's ``decode`` takes, ``z * latents_std + latents_mean`` with the Wan 2.2
  VAE's statistics: LightX2V's ``Wan2_2_VAE_tiny(need_scaled=True)`` applies that before
  decoding, and its pipeline sets ``need_scaled`` exactly when the decoder's path contains
  ``lighttae``. Fed normalised latents it decodes with wrong colours.

So the file name decides (``auto``): a name containing ``lighttae`` is de-normalised, as
LightX2V decides, but only the file's own name is looked at, never a folder above it; any
other name is normalised, taehv's convention, and a name that is not ``taew2_2`` itself is
logged as an assumption. ``FASTWAN_TINY_DECODER_LATENTS`` overrides it for a renamed file.
This module imports neither torch nor diffusers: the settings check the override at start-up.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Final, Literal

__all__ = ["LATENT_CHOICES", "LatentChoice", "LatentSpace", "expected_latents"]

log = logging.getLogger(__name__)

LatentSpace = Literal["normalised", "denormalised"]
LatentChoice = Literal["auto", "normalised", "denormalised"]
#: ``FASTWAN_TINY_DECODER_LATENTS`` values.
LATENT_CHOICES: Final[tuple[LatentChoice, ...]] = ("auto", "normalised", "denormalised")
_VARIABLE: Final = "FASTWAN_TINY_DECODER_LATENTS"
_LIGHTX2V_MARK: Final = "lighttae"
_TAEHV_NAME: Final = "taew2_2"


def expected_latents(source: str | None, choice: LatentChoice) -> LatentSpace:
    """The latent space the decoder in ``source`` (a path or a hub file, None: random weights)
    expects under ``choice``, with one log line saying which and why."""
    if choice != "auto":
        log.info("tiny VAE decoder: fed %s latents (%s=%s)", choice, _VARIABLE, choice)
        return choice
    name = PurePosixPath(source.replace("\\", "/")).name.lower() if source else ""
    if _LIGHTX2V_MARK in name:
        log.info(
            "tiny VAE decoder: fed de-normalised latents (z * latents_std + latents_mean): %r is a "
            "LightX2V lighttae decoder (set %s to override)",
            name,
            _VARIABLE,
        )
        return "denormalised"
    if not name or name.split(".")[0].startswith(_TAEHV_NAME):
        log.info("tiny VAE decoder: fed normalised latents, as taehv's taew2_2 expects")
    else:
        log.warning(
            "tiny VAE decoder: %r is not a published name (taew2_2, lighttaew2_2); assuming it "
            "expects normalised latents, as taehv's taew2_2; set %s=denormalised if its colours are off",
            name,
            _VARIABLE,
        )
    return "normalised"
