"""Tiny random-weight FLUX.1 and SD3 pipelines, built in memory with no download.

The layouts follow diffusers' own `get_dummy_components` for these pipelines (CLIP + T5 + a flow-matching
transformer + a VAE with `shift_factor`), but every tokenizer is built here: the T5 one from a small unigram
vocabulary, so nothing comes from the Hub. `sdcli.diagnostics.tiny` keeps the SD/SDXL builders; this module
only adds families, so the two can be read apart.
"""

from __future__ import annotations

from typing import Any

from sdcli.diagnostics.tiny import TinySpec, _text_encoder, _tokenizer

FAMILIES = ("flux", "flux-schnell", "sd3", "pixart")
T5_WIDTH = 32


def _t5_vocab() -> list[tuple[str, float]]:
    """pad, eos, unk, then single characters and word-initial letters: every ASCII prompt tokenizes."""
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    chars = [(chr(c), -2.0) for c in range(32, 127)]
    starts = [("\u2581" + chr(c), -1.0) for c in range(32, 127)]
    return specials + chars + starts


def _t5_tokenizer() -> Any:
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=_t5_vocab(), extra_ids=0, model_max_length=512)


def _t5_encoder(*, umt5: bool = False) -> Any:
    """A T5 encoder over `_t5_vocab`; `umt5` gives the UMT5 one (AuraFlow's) with the same shape."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    shape: dict[str, Any] = {
        "vocab_size": len(_t5_vocab()),
        "d_model": T5_WIDTH,
        "d_kv": 8,
        "d_ff": 37,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "pad_token_id": 0,
        "eos_token_id": 1,
    }
    if umt5:
        return UMT5EncoderModel(UMT5Config(**shape))
    return T5EncoderModel(T5Config(**shape))


def _kl_vae(
    block_out_channels: tuple[int, ...],
    latent_channels: int,
    norm_num_groups: int,
    sample_size: int,
    **extra: Any,
) -> Any:
    """An AutoencoderKL of one-layer blocks; each block after the first halves the image."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=block_out_channels,
        down_block_types=["DownEncoderBlock2D"] * len(block_out_channels),
        up_block_types=["UpDecoderBlock2D"] * len(block_out_channels),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        sample_size=sample_size,
        **extra,
    )


def _flow_vae(
    latent_channels: int,
    block_out_channels: tuple[int, ...] = (8, 16),
    norm_num_groups: int = 2,
    sample_size: int = 64,
) -> Any:
    """A VAE with SD3/FLUX's latent normalisation (`scaling_factor` and `shift_factor`), no quant convs."""
    return _kl_vae(
        block_out_channels,
        latent_channels,
        norm_num_groups,
        sample_size,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def build_tiny_family_pipeline(spec: TinySpec) -> Any:
    """A random-weight FLUX.1-dev ("flux"), FLUX.1-schnell ("flux-schnell"), SD3 ("sd3") or PixArt-Sigma
    ("pixart") pipeline,
    deterministic for a given spec. The VAE downsamples by 2, like `sdcli.diagnostics.tiny`'s."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    torch.manual_seed(spec.seed)
    hidden = spec.width * 4
    if spec.family in ("flux", "flux-schnell"):
        schnell = spec.family == "flux-schnell"
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,  # 4 latent channels packed 2x2
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=T5_WIDTH,
            pooled_projection_dim=hidden,
            guidance_embeds=not schnell,  # dev is guidance-distilled, schnell is timestep-distilled
            axes_dims_rope=(4, 4, 8),
        )
        # FluxPipeline fixes its native size at 128 latents (256 px here), whatever the spec says.
        pipe = FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(
                shift=1.0 if schnell else 3.0, use_dynamic_shifting=not schnell
            ),
            vae=_flow_vae(4),
            text_encoder=_text_encoder(hidden, projection=False),
            tokenizer=_tokenizer(),
            text_encoder_2=_t5_encoder(),
            tokenizer_2=_t5_tokenizer(),
            transformer=transformer,
        )
        return pipe
    if spec.family == "sd3":
        sd3 = SD3Transformer2DModel(
            sample_size=spec.sample_size,
            patch_size=1,
            in_channels=16,  # SD3's 16 latent channels: its inpainting pipeline checks for them
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=T5_WIDTH,
            pooled_projection_dim=hidden * 2,
            out_channels=16,
        )
        return StableDiffusion3Pipeline(
            transformer=sd3,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=_flow_vae(16),
            text_encoder=_text_encoder(hidden, projection=True),
            tokenizer=_tokenizer(),
            text_encoder_2=_text_encoder(hidden, projection=True),
            tokenizer_2=_tokenizer(),
            text_encoder_3=_t5_encoder(),
            tokenizer_3=_t5_tokenizer(),
        )
    if spec.family == "pixart":
        # PixArt-Sigma (T5 + a DiT, no default_sample_size): a pipeline sdcli knows nothing special about, so
        # the tests can run the generic path, where the pipeline encodes and decodes itself.
        from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

        from sdcli.diagnostics.tiny import _vae

        dit = PixArtTransformer2DModel(
            sample_size=spec.sample_size,
            num_layers=1,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=3,
            caption_channels=T5_WIDTH,
            in_channels=4,
            cross_attention_dim=24,
            out_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        )
        return PixArtSigmaPipeline(
            tokenizer=_t5_tokenizer(),
            text_encoder=_t5_encoder(),
            vae=_vae(spec.width),
            transformer=dit,
            scheduler=DPMSolverMultistepScheduler(),
        )
    raise ValueError(f"unknown tiny pipeline family {spec.family!r}; one of {', '.join(FAMILIES)}")
