"""The Wan 2.2 TI2V-5B architecture, as constructor arguments, for models built without a download.

The full-size values are those of ``Wan-AI/Wan2.2-TI2V-5B-Diffusers`` (which FastWan 2.2
distils without changing the architecture): the benchmark builds random-weight models of
exactly this size. The tiny values keep the layout (48 latent channels, 2x2 patches, the
Wan 2.2 VAE's residual blocks, patchified RGB and 16x spatial compression, UMT5 text
encoder) at a size a CPU runs in a fraction of a second.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "TINY_TEXT_ENCODER",
    "TINY_TRANSFORMER",
    "TINY_VAE",
    "UMT5_XXL_ENCODER",
    "WAN22_LATENTS_MEAN",
    "WAN22_LATENTS_STD",
    "WAN22_TI2V_5B_TRANSFORMER",
    "WAN22_VAE",
]

#: The Wan 2.2 VAE's per-channel latent statistics (``vae/config.json``).
WAN22_LATENTS_MEAN: Final = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
WAN22_LATENTS_STD: Final = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip

_WAN22_VAE_LAYOUT: Final[dict[str, Any]] = {
    "z_dim": 48,
    "in_channels": 12,  # RGB patchified 2x2
    "out_channels": 12,
    "patch_size": 2,
    "is_residual": True,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    "temperal_downsample": [False, True, True],  # diffusers' spelling
    "attn_scales": [],
    "dropout": 0.0,
    "latents_mean": list(WAN22_LATENTS_MEAN),
    "latents_std": list(WAN22_LATENTS_STD),
}

#: ``diffusers.AutoencoderKLWan`` arguments of the Wan 2.2 VAE.
WAN22_VAE: Final[dict[str, Any]] = {
    **_WAN22_VAE_LAYOUT,
    "base_dim": 160,
    "decoder_base_dim": 256,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
}

#: ``diffusers.WanTransformer3DModel`` arguments of Wan 2.2 TI2V-5B (3072 wide = 24 x 128).
WAN22_TI2V_5B_TRANSFORMER: Final[dict[str, Any]] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 24,
    "attention_head_dim": 128,
    "in_channels": 48,
    "out_channels": 48,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 14336,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}

#: ``transformers.UMT5Config`` arguments of the UMT5-XXL encoder Wan uses.
UMT5_XXL_ENCODER: Final[dict[str, Any]] = {
    "vocab_size": 256384,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0,
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": False,
}

#: The tiny VAE: the Wan 2.2 layout with 4 base channels (its decode dominates the tiny run).
TINY_VAE: Final[dict[str, Any]] = {
    **_WAN22_VAE_LAYOUT,
    "base_dim": 4,
    "decoder_base_dim": 4,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
}

#: The tiny text encoder: 2 layers, 32 wide, over the tiny tokenizer's vocabulary.
TINY_TEXT_ENCODER: Final[dict[str, Any]] = {
    "vocab_size": 128,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 32,
    "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0,
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": False,
}

#: The tiny transformer: 2 layers, 2 heads of 12, text width matching the tiny encoder.
TINY_TRANSFORMER: Final[dict[str, Any]] = {
    **WAN22_TI2V_5B_TRANSFORMER,
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "text_dim": TINY_TEXT_ENCODER["d_model"],
    "ffn_dim": 32,
    "num_layers": 2,
}
