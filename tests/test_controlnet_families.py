"""--controlnet beyond SD/SDXL's ControlNetModel: FLUX.1 and SD3 ControlNets on their tiny pipelines,
pixels against plain diffusers scripts, and ControlNets of the wrong family refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.control_fixtures import script_pipe
from tests.png_helpers import params_and_record, pixels, script_args

SIZE = ("-W", "64", "-H", "64")


def _randomise(model, seed: int, parts: tuple[str, ...]) -> None:
    """ControlNets start with zero output layers: random ones make the control change the image."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(part in name for part in parts):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


@pytest.fixture(scope="session")
def tiny_flux_controlnet(tiny_flux: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers import FluxControlNetModel, FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(tiny_flux / "transformer")
    controlnet = FluxControlNetModel.from_transformer(
        transformer, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2
    )
    _randomise(controlnet, 0, ("controlnet_",))
    folder = tmp_path_factory.mktemp("flux-controlnets") / "tiny-flux-control"
    controlnet.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def flux_control_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flux-control-images") / "map.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


def _photo_and_mask(folder: Path, seed: int, repaint: tuple[slice, slice]) -> tuple[Path, Path]:
    """A random 64x64 photo and a mask that repaints `repaint` (white) and keeps the rest (black)."""
    photo, mask = folder / "photo.png", folder / "mask.png"
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photo)
    painted = np.zeros((64, 64), dtype=np.uint8)
    painted[repaint] = 255
    Image.fromarray(painted).save(mask)
    return photo, mask


def _control(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def test_flux_controlnet_pixels_equal_plain_diffusers(
    cli, tiny_flux: Path, tiny_flux_controlnet: Path, flux_control_image: Path
) -> None:
    spec = f"{tiny_flux_controlnet}:{flux_control_image}:0.7:0:0.5"
    args = ("generate", "a cat", "-m", tiny_flux, "--steps", "2", "--seed", "5", *SIZE)
    result = cli(*args, "--controlnet", spec, "-o", "cn.png")
    assert result.exit_code == 0, result.stderr
    expected = script_pipe("FluxControlNetPipeline", tiny_flux, "FluxControlNetModel", tiny_flux_controlnet)(
        "a cat",
        control_image=_control(flux_control_image),
        controlnet_conditioning_scale=0.7,
        control_guidance_start=0.0,
        control_guidance_end=0.5,
        # --guidance unset is the FLUX.1 family's 3.5; FluxControlNetPipeline's own default is 7.
        **script_args(steps=2, seed=5, guidance=3.5),
    ).images[0]
    assert np.array_equal(pixels("cn.png"), np.asarray(expected))
    plain = cli(*args, "-o", "plain.png")
    assert plain.exit_code == 0, plain.stderr
    assert not np.array_equal(pixels("cn.png"), pixels("plain.png"))
    text, record = params_and_record("cn.png")
    assert record["pipeline"] == "FluxControlNetPipeline" and record["family"] == "flux"
    unit = record["controlnets"][0]
    assert (unit["name"], unit["scale"], unit["end"]) == ("tiny-flux-control", 0.7, 0.5)
    assert 'ControlNet 0: "Module: none, Model: tiny-flux-control' in text


def test_flux_controlnet_img2img_pixels_equal_plain_diffusers(
    cli, tiny_flux: Path, tiny_flux_controlnet: Path, flux_control_image: Path, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photo)
    spec = f"{tiny_flux_controlnet}:{flux_control_image}"
    args = ("img2img", "a cat", photo, "-m", tiny_flux, "--steps", "4", "--seed", "9", "-o", "i.png")
    result = cli(*args, "--controlnet", spec)
    assert result.exit_code == 0, result.stderr
    expected = script_pipe(
        "FluxControlNetImg2ImgPipeline", tiny_flux, "FluxControlNetModel", tiny_flux_controlnet
    )(
        "a cat",
        image=_control(photo),
        control_image=_control(flux_control_image),
        controlnet_conditioning_scale=1.0,
        strength=0.75,
        **script_args(steps=4, seed=9, guidance=3.5),
    ).images[0]
    assert np.array_equal(pixels("i.png"), np.asarray(expected))
    assert params_and_record("i.png")[1]["pipeline"] == "FluxControlNetImg2ImgPipeline"


def test_flux_controlnet_inpaint_keeps_the_black_part(
    cli, tiny_flux: Path, tiny_flux_controlnet: Path, flux_control_image: Path, tmp_path: Path
) -> None:
    photo, mask = _photo_and_mask(tmp_path, 6, np.s_[16:48, 16:48])
    args = ("inpaint", photo, mask, "a cat", "-m", tiny_flux, "--steps", "2", "--seed", "1")
    spec = f"{tiny_flux_controlnet}:{flux_control_image}"
    result = cli(*args, "--mask-blur", "0", "--controlnet", spec, "-o", "p.png")
    assert result.exit_code == 0, result.stderr
    out, original = pixels("p.png").astype(int), pixels(photo).astype(int)
    assert np.array_equal(out[:16], original[:16])
    assert params_and_record("p.png")[1]["pipeline"] == "FluxControlNetInpaintPipeline"


def test_a_controlnet_of_another_family_is_exit_2_with_a_hint(
    cli, tiny_flux: Path, tiny_sd: Path, tiny_flux_controlnet: Path, flux_control_image: Path
) -> None:
    args = ("generate", "a cat", "-m", tiny_sd, "--steps", "1", "-o", "x.png")
    result = cli(*args, "--controlnet", f"{tiny_flux_controlnet}:{flux_control_image}")
    assert result.exit_code == 2, result.stderr
    assert "a FluxControlNetModel is for FLUX.1 models" in result.stderr
    assert "Traceback" not in result.stderr and not Path("x.png").exists()


@pytest.fixture(scope="session")
def tiny_sd3_controlnet(tiny_sd3: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers import SD3ControlNetModel, SD3Transformer2DModel

    transformer = SD3Transformer2DModel.from_pretrained(tiny_sd3 / "transformer")
    # The tiny transformer's one block is its last (context_pre_only): its weights do not fit a
    # ControlNet block, so the ControlNet keeps its own random initialisation.
    controlnet = SD3ControlNetModel.from_transformer(
        transformer, num_layers=1, num_extra_conditioning_channels=0, load_weights_from_transformer=False
    )
    _randomise(controlnet, 1, ("controlnet_blocks", "pos_embed_input"))
    folder = tmp_path_factory.mktemp("sd3-controlnets") / "tiny-sd3-control"
    controlnet.save_pretrained(folder)
    return folder


def test_sd3_controlnet_pixels_equal_plain_diffusers(
    cli, tiny_sd3: Path, tiny_sd3_controlnet: Path, flux_control_image: Path, tmp_path: Path
) -> None:
    spec = f"{tiny_sd3_controlnet}:{flux_control_image}:0.9"
    args = ("generate", "a cat", "-m", tiny_sd3, "--steps", "2", "--seed", "3", *SIZE)
    result = cli(*args, "--controlnet", spec, "-o", "cn.png")
    assert result.exit_code == 0, result.stderr
    pipe = script_pipe(
        "StableDiffusion3ControlNetPipeline", tiny_sd3, "SD3ControlNetModel", tiny_sd3_controlnet
    )
    expected = pipe(
        "a cat",
        control_image=_control(flux_control_image),
        controlnet_conditioning_scale=0.9,
        **script_args(steps=2, seed=3),
    ).images[0]
    # The tiny SD3 transformer's one block is context_pre_only, which SD3 never adds ControlNet output
    # to: the image is the plain one here, so what is compared is the pipeline and its call.
    assert np.array_equal(pixels("cn.png"), np.asarray(expected))
    assert params_and_record("cn.png")[1]["pipeline"] == "StableDiffusion3ControlNetPipeline"

    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(photo)
    refused = cli("img2img", "a cat", photo, "-m", tiny_sd3, "--controlnet", spec, "-o", "i.png")
    assert refused.exit_code == 2, refused.stderr
    assert "img2img" in refused.stderr and not Path("i.png").exists()


@pytest.fixture(scope="session")
def tiny_union(tiny_sdxl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers import ControlNetUnionModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet")
    # The tiny VAE downsamples by 2: so must the conditioning embedding.
    shaped = ControlNetUnionModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    # Its condition transformer works at the UNet's first width (320 in SDXL, 32 here).
    width = unet.config.block_out_channels[0]
    config = {k: v for k, v in shaped.config.items() if k != "_use_default_values"}  # else kept at 320
    controlnet = ControlNetUnionModel.from_config(
        {**config, "num_trans_channel": width, "num_proj_channel": width, "num_trans_head": 2}
    )
    _randomise(controlnet, 2, ("controlnet_down_blocks", "controlnet_mid_block", "conv_out", "spatial_ch"))
    folder = tmp_path_factory.mktemp("union-controlnets") / "tiny-union"
    controlnet.save_pretrained(folder)
    return folder


def test_union_pixels_equal_diffusers_union_pipeline(
    cli, tiny_sdxl: Path, tiny_union: Path, flux_control_image: Path
) -> None:
    from sdcli.generation import prompts

    args = ("generate", "a red boat", "-m", tiny_sdxl, "--steps", "2", "--seed", "4", *SIZE)
    result = cli(*args, "--controlnet", f"{tiny_union}@canny:{flux_control_image}:0.7", "-o", "u.png")
    assert result.exit_code == 0, result.stderr
    depth = cli(*args, "--controlnet", f"{tiny_union}@depth:{flux_control_image}:0.7", "-o", "d.png")
    assert depth.exit_code == 0, depth.stderr
    assert not np.array_equal(pixels("u.png"), pixels("d.png"))  # the mode is the union's input

    pipe = script_pipe(
        "StableDiffusionXLControlNetUnionPipeline", tiny_sdxl, "ControlNetUnionModel", tiny_union
    )
    # sdcli encodes SDXL prompts itself (A1111's way), so the script takes the same embeddings.
    texts = prompts.encode(pipe, "a red boat", "", weighting="a1111", clip_skip=1, long=True).batch(1)
    expected = pipe(
        **texts,
        control_image=[_control(flux_control_image)],
        control_mode=[3],
        controlnet_conditioning_scale=0.7,
        **script_args(steps=2, seed=4),
    ).images[0]
    assert np.array_equal(pixels("u.png"), np.asarray(expected))

    text, record = params_and_record("u.png")
    assert record["pipeline"] == "StableDiffusionXLControlNetUnionPipeline"
    assert record["controlnets"][0]["mode"] == "canny"
    assert "Union Control Type: Canny/Lineart/Anime_Lineart/Mlsd" in text
    from sdcli.images import metadata

    read = metadata.record_from_a1111(metadata.parse_a1111(text))
    assert read["controlnets"][0]["mode"] == "canny"


def test_union_img2img_runs_the_union_img2img_pipeline(
    cli, tiny_sdxl: Path, tiny_union: Path, flux_control_image: Path
) -> None:
    spec = f"{tiny_union}@segment:{flux_control_image}"
    result = cli(
        "img2img",
        "a boat",
        flux_control_image,
        "-m",
        tiny_sdxl,
        "--steps",
        "2",
        "-o",
        "i.png",
        "--controlnet",
        spec,
    )
    assert result.exit_code == 0, result.stderr
    assert params_and_record("i.png")[1]["pipeline"] == "StableDiffusionXLControlNetUnionImg2ImgPipeline"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{union}:{img}", "a ControlNet-Union model needs the condition"),
        ("{union}@repaint:{img}", "this union model has 6 modes"),
        ("{union}@sketchy:{img}", "'sketchy' is not a ControlNet-Union mode"),
        ("{flux}@canny:{img}", "only a ControlNet-Union model takes a mode"),
    ],
)
def test_union_modes_are_checked_before_the_model_loads(
    cli, tiny_union: Path, tiny_flux_controlnet: Path, flux_control_image: Path, spec: str, message: str
) -> None:
    text = spec.format(union=tiny_union, flux=tiny_flux_controlnet, img=flux_control_image)
    result = cli("generate", "a cat", "-m", "no/such-model", "--controlnet", text, "-o", "x.png")
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and "no/such-model" not in result.stderr
    assert not Path("x.png").exists()


@pytest.mark.parametrize(
    ("text", "source", "mode", "index"),
    [
        ("org/union@canny:img.png:0.5", "org/union", "canny", 3),
        ("./u@LineArt:img.png", "./u", "lineart", 3),
        ("./u@1:img.png", "./u", "depth", 1),
        ("./u:img.png", "./u", None, None),
    ],
)
def test_union_mode_spec(text: str, source: str, mode: str | None, index: int | None) -> None:
    from sdcli.core.control_specs import ControlNetSpec

    spec = ControlNetSpec.parse(text)
    assert (spec.source, spec.mode, spec.mode_index) == (source, mode, index)


def test_a_folder_with_an_at_sign_is_a_folder(tmp_path: Path) -> None:
    from sdcli.core.control_specs import ControlNetSpec

    (tmp_path / "cn@v2").mkdir()
    assert ControlNetSpec.parse(f"{tmp_path}/cn@v2:img.png").mode is None


def test_two_union_units_equal_diffusers_multi_union(
    cli, tiny_sdxl: Path, tiny_union: Path, flux_control_image: Path, tmp_path: Path
) -> None:
    import diffusers
    from diffusers.models.controlnets import MultiControlNetUnionModel

    from sdcli.generation import prompts

    second = tmp_path / "second.png"
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(second)
    args = ("generate", "a red boat", "-m", tiny_sdxl, "--steps", "2", "--seed", "4", *SIZE, "-o", "m.png")
    units = (f"{tiny_union}@canny:{flux_control_image}:0.6", f"{tiny_union}@depth:{second}:1.2:0:0.5")
    result = cli(*args, "--controlnet", units[0], "--controlnet", units[1])
    assert result.exit_code == 0, result.stderr
    union = diffusers.ControlNetUnionModel.from_pretrained(tiny_union)
    pipe = diffusers.StableDiffusionXLControlNetUnionPipeline.from_pretrained(
        tiny_sdxl, controlnet=MultiControlNetUnionModel([union, union])
    )
    pipe.set_progress_bar_config(disable=True)
    texts = prompts.encode(pipe, "a red boat", "", weighting="a1111", clip_skip=1, long=True).batch(1)
    expected = pipe(
        **texts,
        control_image=[_control(flux_control_image), _control(second)],
        control_mode=[3, 1],
        controlnet_conditioning_scale=[0.6, 1.2],
        control_guidance_start=[0.0, 0.0],
        control_guidance_end=[1.0, 0.5],
        **script_args(steps=2, seed=4),
    ).images[0]
    assert np.array_equal(pixels("m.png"), np.asarray(expected))
    assert [u["mode"] for u in params_and_record("m.png")[1]["controlnets"]] == ["canny", "depth"]


@pytest.mark.parametrize(
    ("base", "controlnet", "message"),
    [
        ("sdxl", "sd", "this ControlNet is for SD 1.x/2.x models; tiny-sdxl is an SDXL model"),
        ("sd", "sdxl", "this ControlNet is for SDXL models; tiny-sd is an SD 1.x/2.x model"),
    ],
)
def test_an_sd_controlnet_on_sdxl_and_the_reverse_are_exit_2_before_any_step(
    cli, request, control_image: Path, base: str, controlnet: str, message: str
) -> None:
    """Both are ControlNetModels: what tells them apart is their config against the UNet's."""
    model = request.getfixturevalue("tiny_sdxl" if base == "sdxl" else "tiny_sd")
    net = request.getfixturevalue("tiny_xl_controlnet" if controlnet == "sdxl" else "tiny_controlnet")
    args = ("generate", "a cat", "-m", model, "--steps", "1", *SIZE, "-o", "x.png")
    result = cli(*args, "--controlnet", f"{net}:{control_image}")
    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr and not Path("x.png").exists()


def test_union_inpaint_pixels_equal_diffusers_union_inpaint_pipeline(
    cli, tiny_sdxl: Path, tiny_union: Path, flux_control_image: Path, tmp_path: Path
) -> None:
    from sdcli.generation import prompts

    photo, mask = _photo_and_mask(tmp_path, 11, np.s_[16:48, 8:40])
    args = ("inpaint", photo, mask, "a red boat", "-m", tiny_sdxl, "--steps", "3", "--seed", "6")
    spec = f"{tiny_union}@depth:{flux_control_image}:0.9:0:0.8"
    result = cli(*args, "--strength", "0.8", "--mask-blur", "0", "--controlnet", spec, "-o", "p.png")
    assert result.exit_code == 0, result.stderr
    _text, record = params_and_record("p.png")
    assert record["pipeline"] == "StableDiffusionXLControlNetUnionInpaintPipeline"
    assert record["controlnets"][0]["mode"] == "depth"

    pipe = script_pipe(
        "StableDiffusionXLControlNetUnionInpaintPipeline", tiny_sdxl, "ControlNetUnionModel", tiny_union
    )
    # sdcli encodes SDXL prompts itself (A1111's way), so the script takes the same embeddings.
    texts = prompts.encode(pipe, "a red boat", "", weighting="a1111", clip_skip=1, long=True).batch(1)
    original, repaint = _control(photo), Image.open(mask).convert("L")
    generated = pipe(
        **texts,
        image=original,
        mask_image=repaint,
        control_image=[_control(flux_control_image)],
        control_mode=[1],
        controlnet_conditioning_scale=0.9,
        control_guidance_start=0.0,
        control_guidance_end=0.8,
        strength=0.8,
        **script_args(steps=3, seed=6),
    ).images[0]
    # sdcli puts the kept (black) part of the photo back over what the pipeline drew, as A1111 does.
    expected = Image.composite(generated, original, repaint)
    assert np.array_equal(pixels("p.png"), np.asarray(expected))
    plain = cli(*args, "--strength", "0.8", "--mask-blur", "0", "-o", "plain.png")
    assert plain.exit_code == 0, plain.stderr
    assert not np.array_equal(pixels("p.png"), pixels("plain.png"))
