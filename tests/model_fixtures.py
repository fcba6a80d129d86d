"""Weights files made from the tiny pipelines, once per session: a single-file checkpoint in the original
(LDM) layout, a config-only folder, LoRAs and textual-inversion embeddings; and a tiny x4 upscale pipeline,
which `sdcli upscale` and the hires fix's model upscaler share.

A plugin module registered in tests/conftest.py, like tests/hub_fixtures.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EMBEDDING_TOKEN = "tiny-emb"  # the embedding's file stem: its default token


def config_only_copy(folder: Path, to: Path) -> Path:
    """What `sdcli download REPO --config-only` keeps of a pipeline: configs and tokenizers, no weights."""
    from sdcli.hub.selection import is_config

    for path in folder.rglob("*"):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and is_config(relative):
            (to / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, to / relative)
    return to


def checkpoint_state(folder: Path, family: str = "sd1") -> dict:
    """The LDM-layout state dict of a saved tiny pipeline."""
    from diffusers import DiffusionPipeline

    from tests.ldm_convert import checkpoint

    return checkpoint(DiffusionPipeline.from_pretrained(folder), family)


def save_checkpoint(folder: Path, family: str, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file(checkpoint_state(folder, family), path)
    return path


def sdxl_unet(cross_attention_dim: int, time_ids: int, pooled: int) -> object:
    """A tiny SDXL-layout UNet: its added conditioning is `time_ids` numbers, embedded 8 wide each (6 for a
    base: size, crop and target size; 5 for a refiner: size, crop and aesthetic score), and the `pooled`
    text embedding."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=2,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=time_ids * 8 + pooled,
        use_linear_projection=True,
    )


def wide_sdxl_pipeline() -> object:
    """A tiny SDXL whose two text encoders differ in width (32 and 64), as in the real model: diffusers tells
    them apart in a single file by width, so `tiny_sdxl` (both 32 wide) cannot round-trip through one."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from sdcli.diagnostics.tiny import SD15_SCHEDULER, _text_encoder, _tokenizer, _vae

    torch.manual_seed(0)
    return StableDiffusionXLPipeline(
        unet=sdxl_unet(32 + 64, time_ids=6, pooled=64),
        vae=_vae(8),
        text_encoder=_text_encoder(32, projection=False),
        text_encoder_2=_text_encoder(64, projection=True),
        tokenizer=_tokenizer(),
        tokenizer_2=_tokenizer(),
        scheduler=EulerDiscreteScheduler.from_config(SD15_SCHEDULER, timestep_spacing="leading"),
    )


def make_lora(family: str, to: Path, seed: int = 1) -> Path:
    """A rank-4 LoRA on the tiny UNet's attention projections, random A and B so that it changes the output,
    saved by diffusers in the format `load_lora_weights` reads."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    from sdcli.diagnostics.tiny import TinySpec, build_tiny_pipeline

    pipe = build_tiny_pipeline(TinySpec(family))
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    pipe.unet.add_adapter(config)
    type(pipe).save_lora_weights(to, unet_lora_layers=get_peft_model_state_dict(pipe.unet))
    return to / "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def tiny_sd_config(tiny_sd: Path, weights_dir: Path) -> Path:
    return config_only_copy(tiny_sd, weights_dir / "tiny-sd-config")


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_sd: Path, weights_dir: Path) -> Path:
    return save_checkpoint(tiny_sd, "sd1", weights_dir / "tiny-ckpt.safetensors")


@pytest.fixture(scope="session")
def wide_sdxl(weights_dir: Path) -> Path:
    folder = weights_dir / "wide-sdxl"
    wide_sdxl_pipeline().save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


@pytest.fixture(scope="session")
def tiny_lora(weights_dir: Path) -> Path:
    return make_lora("sd", weights_dir / "lora-sd")


@pytest.fixture(scope="session")
def tiny_lora_sdxl(weights_dir: Path) -> Path:
    path = make_lora("sdxl", weights_dir / "lora-sdxl")
    return path.rename(path.with_name("sdxl-style.safetensors"))


@pytest.fixture(scope="session")
def tiny_embedding(weights_dir: Path) -> Path:
    """An A1111-style safetensors embedding: one vector for the tiny SD text encoder (width 32)."""
    import torch
    from safetensors.torch import save_file

    path = weights_dir / f"{EMBEDDING_TOKEN}.safetensors"
    save_file({"emb_params": torch.randn(1, 32, generator=torch.Generator().manual_seed(3))}, path)
    return path


@pytest.fixture(scope="session")
def tiny_x4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight StableDiffusionUpscalePipeline in the x4 upscaler's layout, as diffusers' own tests
    build it: a UNet taking 4 latent channels and the low-res image's 3, a VAE that upscales by 4."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    from sdcli.diagnostics.tiny import _text_encoder, _tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=7,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
        use_linear_projection=True,
        num_class_embeds=100,  # the noise level is the class label
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 8, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        norm_num_groups=2,
        scaling_factor=0.08333,
    )
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=_text_encoder(32, projection=False),
        tokenizer=_tokenizer(),
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    folder = tmp_path_factory.mktemp("upscalers") / "tiny-x4"
    pipe.save_pretrained(folder)
    return folder
