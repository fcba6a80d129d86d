"""`sdcli generate --refiner MODEL --refiner-switch F`: SDXL's ensemble of experts, on tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.model_fixtures import sdxl_unet
from tests.png_helpers import params_and_record, pixels

FAST = ("--steps", "4", "-W", "64", "-H", "64", "--seed", "5", "--guidance", "5")
REFINER_REFERENCE = "stabilityai/stable-diffusion-xl-refiner-1.0"


def build_refiner(base_folder: Path, seed: int = 1) -> object:
    """A tiny refiner for the tiny SDXL, made as SDXL 1.0's is: the base's VAE and second text encoder (so
    that sdcli shares them), its own UNet on that encoder alone, conditioned on an aesthetic score."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    base = StableDiffusionXLPipeline.from_pretrained(base_folder)
    width = base.text_encoder_2.config.hidden_size
    torch.manual_seed(seed)
    unet = sdxl_unet(width, time_ids=5, pooled=base.text_encoder_2.config.projection_dim)
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


def test_the_module_below_the_cli_shares_the_base_vae_and_encoder(
    tiny_sdxl: Path, tiny_refiner: Path
) -> None:
    from sdcli.core.requests import GenerationRequest, ModelRequest
    from sdcli.generation import engine
    from sdcli.model import pipelines

    model = pipelines.load_model(ModelRequest(str(tiny_sdxl), device="cpu", refiner=str(tiny_refiner)))
    assert model.refiner is not None
    assert model.refiner.pipe.vae is model.pipe.vae  # one copy on the device, as in diffusers' example
    assert model.refiner.pipe.text_encoder_2 is model.pipe.text_encoder_2
    assert model.refiner.pipe.unet is not model.pipe.unet
    request = GenerationRequest(
        "a cat", steps=4, guidance=5.0, width=64, height=64, seed=5, refiner_switch=0.75
    ).validated()
    (image,) = engine.generate(model, request)
    assert np.array_equal(np.asarray(image.image), plain_diffusers(tiny_sdxl, tiny_refiner, 0.75))
    assert image.record["refiner"] == "tiny-refiner" and image.record["refiner_switch"] == 0.75


def test_modules_with_other_weights_are_not_shared(tiny_sdxl: Path) -> None:
    import torch
    from diffusers import AutoencoderKL

    from sdcli.model import pipelines

    vae = AutoencoderKL.from_pretrained(tiny_sdxl / "vae")
    same = AutoencoderKL.from_pretrained(tiny_sdxl / "vae")
    assert pipelines.same_weights(vae, same)
    with torch.no_grad():
        same.decoder.conv_out.bias.add_(1e-3)
    assert not pipelines.same_weights(vae, same)


def test_without_refiner_the_record_is_unchanged(cli, tiny_sdxl: Path, tiny_refiner: Path) -> None:
    result = cli("generate", "a cat", "-m", tiny_sdxl, *FAST, "-o", "plain.png")
    assert result.exit_code == 0, result.stderr
    text, record = params_and_record("plain.png")
    assert "Refiner" not in text and not any(key.startswith("refiner") for key in record)
    # The refiner changes the image: the test above compares with something the base alone does not make.
    made = cli("generate", "a cat", "-m", tiny_sdxl, *FAST, "--refiner", tiny_refiner, "-o", "r.png")
    assert made.exit_code == 0, made.stderr
    assert not np.array_equal(pixels("plain.png"), pixels("r.png"))


@pytest.fixture
def refiner_here(tiny_refiner: Path) -> Path:
    """The tiny refiner under its own name in the test's working folder, where --from looks for it."""
    link = Path("tiny-refiner")
    link.symlink_to(tiny_refiner, target_is_directory=True)
    return link


def test_from_remakes_the_same_pixels_from_the_record_and_from_a1111_text(
    cli, tiny_sdxl: Path, refiner_here: Path
) -> None:
    made = cli("generate", "a cat", "-m", tiny_sdxl, *FAST, "--refiner", refiner_here, "-o", "a.png")
    assert made.exit_code == 0, made.stderr
    again = cli("generate", "--from", "a.png", "-m", tiny_sdxl, "-o", "b.png")
    assert again.exit_code == 0, again.stderr
    assert "refiner" not in again.stderr
    assert np.array_equal(pixels("a.png"), pixels("b.png"))
    assert params_and_record("b.png")[1]["refiner_switch"] == 0.8  # A1111's default
    with Image.open("a.png") as im:
        text = im.text["parameters"]
        info = PngInfo()
        info.add_text("parameters", text)
        Image.new("RGB", im.size).save("a1111.png", pnginfo=info)
    third = cli("generate", "--from", "a1111.png", "-m", tiny_sdxl, "-o", "c.png")
    assert third.exit_code == 0, third.stderr
    assert np.array_equal(pixels("a.png"), pixels("c.png"))


def test_from_warns_when_the_refiner_is_not_found(cli, tiny_sdxl: Path, refiner_here: Path) -> None:
    made = cli("generate", "a cat", "-m", tiny_sdxl, *FAST, "--refiner", refiner_here, "-o", "a.png")
    assert made.exit_code == 0, made.stderr
    refiner_here.unlink()
    again = cli("generate", "--from", "a.png", "-m", tiny_sdxl, "-o", "b.png")
    assert again.exit_code == 0, again.stderr
    assert "refiner tiny-refiner, which --from cannot find here: pass --refiner again" in again.stderr
    assert "refiner" not in params_and_record("b.png")[1]


def test_img2img_from_a_refined_image_keeps_its_refiner_and_inpaint_drops_it(
    cli, tiny_sdxl: Path, refiner_here: Path
) -> None:
    made = cli("generate", "a cat", "-m", tiny_sdxl, *FAST, "--refiner", refiner_here, "-o", "a.png")
    assert made.exit_code == 0, made.stderr
    again = cli(
        "img2img", "a dog", "a.png", "--from", "a.png", "-m", tiny_sdxl, "--strength", "0.5", "-o", "i.png"
    )
    assert again.exit_code == 0, again.stderr
    assert params_and_record("i.png")[1]["refiner"] == "tiny-refiner"  # A1111 pastes it into img2img too
    Image.new("L", (64, 64), 255).save("mask.png")
    painted = cli("inpaint", "a.png", "mask.png", "a dog", "--from", "a.png", "-m", tiny_sdxl, "-o", "p.png")
    assert painted.exit_code == 0, painted.stderr
    assert "refiner" not in params_and_record("p.png")[1]
    refused = cli("inpaint", "a.png", "mask.png", "a dog", "-m", tiny_sdxl, "--refiner", refiner_here)
    assert refused.exit_code == 2, refused.stderr
    assert refused.stderr.splitlines() == [
        "error: inpaint has no --refiner option",
        "hint: --refiner is an option of sdcli generate and sdcli img2img",
    ]


def test_a_refiner_checkpoint_loads_as_refiner_and_is_refused_as_model(
    cli, tiny_sdxl: Path, tiny_refiner: Path, refiner_checkpoint: Path
) -> None:
    base = ("generate", "a cat", "-m", tiny_sdxl, *FAST)
    folder = cli(*base, "--refiner", tiny_refiner, "-o", "folder.png")
    assert folder.exit_code == 0, folder.stderr
    single = cli(*base, "--refiner", refiner_checkpoint, "--offline", "-o", "file.png")
    assert single.exit_code == 0, single.stderr
    assert np.array_equal(pixels("folder.png"), pixels("file.png"))
    text, record = params_and_record("file.png")
    assert record["refiner"] == "tiny-refiner-file" and len(record["refiner_hash"]) == 10
    assert f"Refiner: tiny-refiner-file [{record['refiner_hash']}]" in text
    as_model = cli("generate", "a cat", "-m", refiner_checkpoint, "--steps", "1", "-o", "no.png")
    assert as_model.exit_code == 2, as_model.stderr
    assert "SDXL refiner checkpoint" in as_model.stderr and "--refiner" in as_model.stderr
    assert not Path("no.png").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--refiner", "x/refiner", "--refiner-switch", "0"], "--refiner-switch must be between 0 and 1"),
        (["--refiner", "x/refiner", "--refiner-switch", "1"], "--refiner-switch must be between 0 and 1"),
        (["--refiner", "x/refiner", "--refiner-switch", "nan"], "--refiner-switch must be between 0 and 1"),
        (["--refiner-switch", "0.5"], "--refiner-switch needs --refiner"),
        (["--refiner", "x/refiner", "--hires-scale", "2"], "--refiner and the hires fix"),
        (["--refiner", "./no-such-refiner"], "--refiner ./no-such-refiner: no such file or folder"),
        (["--refiner", "refiner.ckpt"], "--refiner refiner.ckpt is a pickle"),
        (["--refiner", ""], "--refiner is empty"),
    ],
)
def test_bad_refiner_values_exit_2_before_loading(cli, options: list[str], message: str) -> None:
    result = cli("generate", "a cat", "-m", "no/such-model", *options, "-o", "x.png")
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the error, and at most a hint
    assert not Path("x.png").exists()


def test_wrong_kinds_of_model_exit_2_before_loading(
    cli, tiny_sd: Path, tiny_sdxl: Path, tiny_refiner: Path, tmp_path: Path
) -> None:
    sd_base = cli("generate", "a cat", "-m", tiny_sd, "--refiner", tiny_refiner, "-o", "x.png")
    assert sd_base.exit_code == 2, sd_base.stderr
    assert "--refiner finishes what an SDXL model began; tiny-sd is Stable Diffusion" in sd_base.stderr
    sd_refiner = cli("generate", "a cat", "-m", tiny_sdxl, "--refiner", tiny_sd, "-o", "x.png")
    assert sd_refiner.exit_code == 2, sd_refiner.stderr
    assert "is a StableDiffusionPipeline, not an SDXL refiner" in sd_refiner.stderr
    assert not Path("x.png").exists()
    # Found only when loading (here: a single file's family), still before any weights load.
    from sdcli.model import pipelines

    with pytest.raises(pipelines.UsageError, match="--refiner finishes"):
        pipelines.check_refinable("FluxPipeline", "flux")


def test_controlnet_and_refiner_do_not_combine(cli, tiny_sdxl: Path, tiny_refiner: Path) -> None:
    Image.new("RGB", (64, 64)).save("edges.png")
    result = cli(
        "generate", "a cat", "-m", tiny_sdxl, "--refiner", tiny_refiner, "--controlnet", "x/cn:edges.png"
    )
    assert result.exit_code == 2 and "--refiner and --controlnet do not combine" in result.stderr


def test_worker_protocol_refuses_refiners() -> None:
    from sdcli.core.requests import ModelRequest
    from sdcli.worker import protocol

    data = {
        **protocol.model_to_json(ModelRequest()),
        "refiner": "stabilityai/stable-diffusion-xl-refiner-1.0",
    }
    with pytest.raises(protocol.BadRequest, match="does not run refiners"):
        protocol.model_from_json(data)
    assert protocol.model_from_json(protocol.model_to_json(ModelRequest())) == ModelRequest().validated()


def test_a1111_text_round_trip() -> None:
    from sdcli.images import metadata

    record = {"schema": 1, "prompt": "a cat", "refiner": "sd_xl_refiner_1.0", "refiner_hash": "7440042bbdc8"}
    text = metadata.a1111_parameters({**record, "refiner_switch": 0.8})
    assert "Refiner: sd_xl_refiner_1.0 [7440042bbd], Refiner switch at: 0.8" in text
    back = metadata.record_from_a1111(metadata.parse_a1111(text))
    assert (back["refiner"], back["refiner_hash"], back["refiner_switch"]) == (
        "sd_xl_refiner_1.0",
        "7440042bbd",
        0.8,
    )
    plain = metadata.record_from_a1111(metadata.parse_a1111("a cat\nSteps: 20, Refiner: my refiner, Seed: 1"))
    assert plain["refiner"] == "my refiner" and "refiner_hash" not in plain


def test_from_keeps_hub_ids_and_drops_names_it_cannot_find(tmp_path: Path, monkeypatch) -> None:
    from sdcli.images import remake

    monkeypatch.chdir(tmp_path)
    changes = {"refiner": REFINER_REFERENCE, "refiner_switch": 0.7}
    assert remake._find_refiner(changes) == [] and changes["refiner"] == REFINER_REFERENCE
    (tmp_path / "mine.safetensors").write_bytes(b"")
    changes = {"refiner": "mine"}
    assert remake._find_refiner(changes) == [] and changes["refiner"] == "./mine.safetensors"
    for name in ("/etc", "../x", "gone"):
        changes = {"refiner": name, "refiner_switch": 0.7}
        (warning,) = remake._find_refiner(changes)
        assert "pass --refiner again" in warning and changes == {}


def test_img2img_with_a_refiner_matches_plain_diffusers(cli, tiny_sdxl: Path, tiny_refiner: Path) -> None:
    """A1111's switch is a fraction of the steps img2img runs: at strength 0.6 and switch 0.5, the refiner
    takes over 0.7 of the way through diffusers' whole schedule."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save("in.png")
    options = ("--steps", "10", "--seed", "5", "--guidance", "5", "--strength", "0.6")
    result = cli(
        "img2img", "a dog", "in.png", "-m", tiny_sdxl, *options, "--refiner", tiny_refiner,
        "--refiner-switch", "0.5", "-o", "i.png",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    base = StableDiffusionXLImg2ImgPipeline.from_pipe(StableDiffusionXLPipeline.from_pretrained(tiny_sdxl))
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        tiny_refiner, text_encoder_2=base.text_encoder_2, vae=base.vae
    )
    for pipe in (base, refiner):
        pipe.set_progress_bar_config(disable=True)
    common = dict(num_inference_steps=10, guidance_scale=5.0)
    with Image.open("in.png") as im:
        latents = base(
            "a dog",
            image=im.convert("RGB"),
            strength=0.6,
            denoising_end=0.7,
            output_type="latent",
            generator=torch.Generator("cpu").manual_seed(5),
            **common,
        ).images
    image = refiner(
        "a dog", image=latents, denoising_start=0.7, generator=torch.Generator("cpu").manual_seed(5), **common
    ).images[0]
    assert np.array_equal(pixels("i.png"), np.asarray(image.convert("RGB")))
    text, record = params_and_record("i.png")
    assert record["refiner_switch"] == 0.5 and record["strength"] == 0.6
    assert "Refiner: tiny-refiner, Refiner switch at: 0.5" in text


def test_the_refined_image_keeps_the_fp32_retry_of_the_decode(tiny_sdxl: Path, tiny_refiner: Path) -> None:
    from sdcli.core.requests import GenerationRequest, ModelRequest
    from sdcli.generation import engine
    from sdcli.model import pipelines
    from tests.test_memory import nan_decoder

    model = pipelines.load_model(
        ModelRequest(str(tiny_sdxl), device="cpu", dtype="bf16", refiner=str(tiny_refiner))
    )
    assert model.refiner is not None and model.refiner.pipe.vae is model.pipe.vae
    nan_decoder(model)  # the VAE both share: the refiner's latents are decoded by it
    request = GenerationRequest("a cat", steps=2, width=64, height=64, seed=1, refiner_switch=0.5).validated()
    (image,) = engine.generate(model, request)
    assert np.isfinite(np.asarray(image.image)).all() and np.asarray(image.image).std() > 0
    assert image.record["vae_fp32_retry"] is True and "decoded in fp32" in " ".join(image.notes)


def test_a_single_file_sdxl_base_takes_a_refiner(cli, wide_sdxl: Path, weights_dir: Path) -> None:
    from tests.model_fixtures import config_only_copy, save_checkpoint

    refiner = weights_dir / "wide-refiner"
    build_refiner(wide_sdxl).save_pretrained(refiner)  # type: ignore[attr-defined]
    config = config_only_copy(wide_sdxl, weights_dir / "wide-sdxl-config")
    checkpoint = save_checkpoint(wide_sdxl, "sdxl", weights_dir / "wide-sdxl.safetensors")
    refined = (*FAST, "--refiner", refiner)
    folder = cli("generate", "a cat", "-m", wide_sdxl, *refined, "-o", "folder.png")
    assert folder.exit_code == 0, folder.stderr
    single = cli("generate", "a cat", "-m", checkpoint, "--config", config, *refined, "-o", "file.png")
    assert single.exit_code == 0, single.stderr
    assert np.array_equal(pixels("folder.png"), pixels("file.png"))


def test_xy_over_the_refiner_switch(cli, tiny_sdxl: Path, tiny_refiner: Path) -> None:
    result = cli(
        "generate", "a cat", "-m", tiny_sdxl, *FAST, "--refiner", tiny_refiner,
        "--xy", "refiner-switch=0.5,0.75", "-o", "cells/", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    images = [json.loads(line) for line in result.stdout.splitlines() if '"type": "image"' in line]
    assert [image["parameters"]["refiner_switch"] for image in images] == [0.5, 0.75]
    assert np.array_equal(pixels(images[0]["path"]), plain_diffusers(tiny_sdxl, tiny_refiner, 0.5))
    refused = cli("generate", "a cat", "-m", tiny_sdxl, "--xy", "refiner-switch=0.5,0.75")
    assert refused.exit_code == 2 and "--xy refiner-switch needs --refiner" in refused.stderr
