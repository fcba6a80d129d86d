"""`sdcli generate --refiner MODEL --refiner-switch F`: SDXL's ensemble of experts, on tiny random models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.png_helpers import params_and_record, pixels

FAST = ("--steps", "4", "-W", "64", "-H", "64", "--seed", "5", "--guidance", "5")
REFINER_REFERENCE = "stabilityai/stable-diffusion-xl-refiner-1.0"


def build_refiner(base_folder: Path, seed: int = 1) -> object:
    """A tiny refiner for the tiny SDXL, made as SDXL 1.0's is: the base's VAE and second text encoder (so
    that sdcli shares them), its own UNet on that encoder alone, conditioned on an aesthetic score."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    base = StableDiffusionXLPipeline.from_pretrained(base_folder)
    width = base.text_encoder_2.config.hidden_size
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=width,
        attention_head_dim=4,
        norm_num_groups=2,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=5 * 8 + base.text_encoder_2.config.projection_dim,
        use_linear_projection=True,
    )
    return StableDiffusionXLImg2ImgPipeline(
        vae=base.vae,
        text_encoder=None,
        text_encoder_2=base.text_encoder_2,
        tokenizer=None,
        tokenizer_2=base.tokenizer_2,
        unet=unet,
        scheduler=base.scheduler,
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,  # as in SDXL refiner 1.0's model_index.json
    )


@pytest.fixture(scope="session")
def tiny_refiner(tmp_path_factory: pytest.TempPathFactory, tiny_sdxl: Path) -> Path:
    folder = tmp_path_factory.mktemp("refiners") / "tiny-refiner"
    build_refiner(tiny_sdxl).save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


@pytest.fixture(scope="session")
def refiner_checkpoint(tiny_refiner: Path) -> Path:
    """The tiny refiner as one A1111-layout file (its only text encoder is embedder 0, as in the real one);
    its configuration is put in the Hub cache as `sdcli download REFINER --config-only` would."""
    from diffusers import StableDiffusionXLImg2ImgPipeline
    from safetensors.torch import save_file

    from sdcli.hub.cache import hub_cache_dir
    from tests.ldm_convert import openclip_to_ldm, unet_to_ldm, vae_to_ldm
    from tests.model_fixtures import config_only_copy

    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(tiny_refiner)
    state = {
        **unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config)),
        **vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config)),
        **openclip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.0.model."),
    }
    path = tiny_refiner.parent / "tiny-refiner-file.safetensors"
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, path)
    commit = "0" * 39 + "1"
    repo = hub_cache_dir() / f"models--{REFINER_REFERENCE.replace('/', '--')}"
    config_only_copy(tiny_refiner, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return path


def plain_diffusers(
    base_folder: Path, refiner_folder: Path, switch: float, prompt: str = "a cat"
) -> np.ndarray:
    """diffusers' own ensemble-of-experts example, on CPU noise from the same seed."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    base = StableDiffusionXLPipeline.from_pretrained(base_folder)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        refiner_folder, text_encoder_2=base.text_encoder_2, vae=base.vae
    )
    for pipe in (base, refiner):
        pipe.set_progress_bar_config(disable=True)
    common = dict(num_inference_steps=4, guidance_scale=5.0)
    latents = base(
        prompt,
        width=64,
        height=64,
        denoising_end=switch,
        output_type="latent",
        generator=torch.Generator("cpu").manual_seed(5),
        **common,
    ).images
    image = refiner(
        prompt,
        image=latents,
        denoising_start=switch,
        generator=torch.Generator("cpu").manual_seed(5),
        **common,
    ).images[0]
    return np.asarray(image.convert("RGB"))


def test_cli_matches_plain_diffusers_and_records_the_refiner(
    cli, tiny_sdxl: Path, tiny_refiner: Path
) -> None:
    result = cli(
        "generate",
        "a cat",
        "-m",
        tiny_sdxl,
        *FAST,
        "--refiner",
        tiny_refiner,
        "--refiner-switch",
        "0.5",
        "-o",
        "r.png",
    )
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(pixels("r.png"), plain_diffusers(tiny_sdxl, tiny_refiner, 0.5))
    text, record = params_and_record("r.png")
    assert "Refiner: tiny-refiner, Refiner switch at: 0.5" in text.splitlines()[-1]
    assert record["refiner"] == "tiny-refiner" and record["refiner_switch"] == 0.5
