"""Tiny random-weight Stable Diffusion pipelines, built in memory with no download.

`sdcli info --check` runs one to prove the torch/diffusers stack works on a device; the tests and benchmarks
save them with `save_pretrained` and load them back through the real loading code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The SD 1.x scheduler as published (a PNDM/"PLMS" scheduler with the scaled-linear betas).
SD15_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
}


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny pipeline: `family` is "sd", "sdxl" or "sd-inpaint"; `width` scales every layer."""

    family: str = "sd"
    width: int = 8
    sample_size: int = 32  # latent size; the image is twice that (the tiny VAE downsamples by 2)
    seed: int = 0


def _byte_vocab() -> dict[str, int]:
    """A CLIP byte-level vocabulary with no merges: every prompt tokenizes, one token per byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for code in codes:
            vocab[chr(code) + suffix] = len(vocab)
    return vocab


def _tokenizer() -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=_byte_vocab(), merges=[], model_max_length=77)


def _text_encoder(hidden: int, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=hidden,
        vocab_size=1000,
        max_position_embeddings=77,
        hidden_act="gelu",
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _vae(width: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[width, width * 2],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=2,
    )


def _unet(spec: TinySpec, cross_attention_dim: int, sdxl: bool) -> Any:
    from diffusers import UNet2DConditionModel

    width = spec.width
    extra: dict[str, Any] = {}
    if sdxl:
        extra = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + cross_attention_dim // 2,
            "use_linear_projection": True,
        }
    return UNet2DConditionModel(
        block_out_channels=(width * 4, width * 8),
        layers_per_block=1,
        sample_size=spec.sample_size,
        in_channels=9 if spec.family == "sd-inpaint" else 4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=2,
        **extra,
    )


def build_tiny_pipeline(spec: TinySpec = TinySpec()) -> Any:
    """Build a random-weight pipeline of the given family, deterministic for a given spec."""
    import torch
    from diffusers import (
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )

    torch.manual_seed(spec.seed)
    hidden = spec.width * 4
    if spec.family == "sdxl":
        return StableDiffusionXLPipeline(
            unet=_unet(spec, cross_attention_dim=hidden * 2, sdxl=True),
            vae=_vae(spec.width),
            text_encoder=_text_encoder(hidden, projection=False),
            text_encoder_2=_text_encoder(hidden, projection=True),
            tokenizer=_tokenizer(),
            tokenizer_2=_tokenizer(),
            scheduler=EulerDiscreteScheduler.from_config(SD15_SCHEDULER, timestep_spacing="leading"),
        )
    if spec.family not in ("sd", "sd-inpaint"):
        raise ValueError(f"unknown tiny pipeline family {spec.family!r}")
    cls = StableDiffusionInpaintPipeline if spec.family == "sd-inpaint" else StableDiffusionPipeline
    return cls(
        unet=_unet(spec, cross_attention_dim=hidden, sdxl=False),
        vae=_vae(spec.width),
        text_encoder=_text_encoder(hidden, projection=False),
        tokenizer=_tokenizer(),
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
