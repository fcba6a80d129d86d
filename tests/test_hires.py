"""`sdcli generate --hires-scale`: A1111's hires fix, a second img2img pass at the upscaled size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.core.requests import GenerationRequest
from sdcli.worker import protocol
from tests.png_helpers import pixels

FAST = ("--steps", "2", "-W", "64", "-H", "64", "--seed", "5", "--hires-scale", "2")


def test_latent_hires_is_upscaled_and_recorded(cli, tiny_sd: Path) -> None:
    result = cli("generate", "a cat", "-m", tiny_sd, *FAST, "--hires-steps", "2", "-o", "hr.png")
    assert result.exit_code == 0, result.stderr
    with Image.open("hr.png") as im:
        assert im.size == (128, 128)
        text = im.text
    line = text["parameters"].splitlines()[-1]
    assert "Size: 64x64" in line  # A1111's Size is the first pass's
    assert "Denoising strength: 0.7" in line
    assert "Hires upscale: 2, Hires steps: 2, Hires upscaler: Latent (nearest)" in line
    assert line.index("Denoising strength") < line.index("Hires upscale") < line.index("Version")
    record = json.loads(text["sdcli"])
    assert (record["width"], record["height"]) == (64, 64)
    assert record["hires_scale"] == 2 and record["hires_steps"] == 2
    assert record["hires_strength"] == 0.7 and record["hires_upscaler"] == "latent"
    assert record["strength"] is None


def test_records_without_hires_are_unchanged(cli, tiny_sd: Path) -> None:
    result = cli("generate", "a cat", "-m", tiny_sd, "--steps", "1", "-o", "plain.png")
    assert result.exit_code == 0, result.stderr
    with Image.open("plain.png") as im:
        assert "Hires" not in im.text["parameters"] and "Denoising" not in im.text["parameters"]
        assert not any(key.startswith("hires") for key in json.loads(im.text["sdcli"]))


@pytest.mark.parametrize("upscaler", ["latent", "lanczos"])
def test_from_remakes_hires_pixel_identical(cli, tiny_sd: Path, upscaler: str) -> None:
    made = cli(
        "generate",
        "a cat",
        "-m",
        tiny_sd,
        *FAST,
        "--hires-steps",
        "2",
        "--hires-upscaler",
        upscaler,
        "-o",
        "a.png",
    )
    assert made.exit_code == 0, made.stderr
    again = cli("generate", "--from", "a.png", "-m", tiny_sd, "-o", "b.png")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(pixels("a.png"), pixels("b.png"))
    # A1111's text alone (no sdcli record) carries the hires fix too.
    with Image.open("a.png") as im:
        text = im.text["parameters"]
        Image.new("RGB", im.size).save("a1111.png", pnginfo=_text_only(text))
    third = cli("generate", "--from", "a1111.png", "-m", tiny_sd, "-o", "c.png", "--json")
    assert third.exit_code == 0, third.stderr
    record = json.loads(third.stdout.splitlines()[0])["parameters"]
    assert record["hires_upscaler"] == upscaler and record["hires_scale"] == 2 and record["hires_steps"] == 2
    assert np.array_equal(pixels("a.png"), pixels("c.png"))


def _text_only(text: str):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", text)
    return info


@pytest.mark.parametrize("upscaler", ["lanczos", "latent"])
def test_hires_matches_plain_diffusers_two_pass(cli, tiny_sd: Path, upscaler: str) -> None:
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    result = cli(
        "generate",
        "a cat",
        "-m",
        tiny_sd,
        *FAST,
        "--hires-steps",
        "3",
        "--hires-upscaler",
        upscaler,
        "-o",
        "s.png",
    )
    assert result.exit_code == 0, result.stderr
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.set_progress_bar_config(disable=True)
    common = dict(num_inference_steps=2, guidance_scale=7.0)
    first = pipe(
        "a cat",
        width=64,
        height=64,
        generator=torch.Generator("cpu").manual_seed(5),
        output_type="latent" if upscaler == "latent" else "pil",
        **common,
    ).images
    if upscaler == "latent":
        side = 128 // pipe.vae_scale_factor
        image = torch.nn.functional.interpolate(first, size=(side, side), mode="nearest")
    else:
        image = [first[0].resize((128, 128), Image.Resampling.LANCZOS)]
    second = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
    # A1111's hires pass: --hires-steps 3 at strength 0.7 are the last 3 steps of int(3 / 0.7) = 4.
    final = second(
        "a cat",
        image=image,
        num_inference_steps=4,
        strength=0.75,
        guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(5),
    ).images[0]
    assert np.array_equal(pixels("s.png"), np.asarray(final.convert("RGB")))


def test_sdxl_hires(cli, tiny_sdxl: Path) -> None:
    result = cli("generate", "a cat", "-m", tiny_sdxl, *FAST, "--hires-upscaler", "lanczos", "-o", "xl.png")
    assert result.exit_code == 0, result.stderr
    with Image.open("xl.png") as im:
        assert im.size == (128, 128)


def test_hires_at_the_native_size_and_its_limit_after_loading(cli, tiny_sd: Path) -> None:
    result = cli("generate", "a cat", "-m", tiny_sd, "--steps", "1", "--hires-scale", "1.5", "-o", "n.png")
    assert result.exit_code == 0, result.stderr
    with Image.open("n.png") as im:
        assert im.size == (96, 96)  # the tiny model's native 64 px, 1.5 times
    too_big = cli("generate", "a cat", "-m", tiny_sd, "--steps", "1", "--hires-scale", "200")
    assert too_big.exit_code == 2 and "over the 8192 px limit" in too_big.stderr


def test_img2img_from_a_hires_image_takes_no_hires_fix(cli, tiny_sd: Path) -> None:
    made = cli("generate", "a cat", "-m", tiny_sd, *FAST, "--hires-steps", "1", "-o", "h.png")
    assert made.exit_code == 0, made.stderr
    again = cli(
        "img2img", "a dog", "h.png", "--from", "h.png", "-m", tiny_sd, "--strength", "0.5", "-o", "i.png"
    )
    assert again.exit_code == 0, again.stderr
    with Image.open("i.png") as im:
        assert im.size == (128, 128)  # the input's size: no second upscale
        assert "hires_scale" not in json.loads(im.text["sdcli"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--hires-scale", "1"], "--hires-scale must be a finite number above 1"),
        (["--hires-scale", "nan"], "--hires-scale must be a finite number above 1"),
        (["--hires-scale", "2", "--hires-strength", "0"], "--hires-strength must be in (0, 1]"),
        (["--hires-scale", "2", "--hires-strength", "1.5"], "--hires-strength must be in (0, 1]"),
        (["--hires-scale", "2", "--hires-steps", "-1"], "--hires-steps must be between 0 and"),
        (["--hires-scale", "2", "--hires-steps", "1001"], "--hires-steps must be between 0 and"),
        (["--hires-scale", "2", "--hires-upscaler", "esrgan"], "'esrgan' is not an upscaler"),
        (["--hires-scale", "3", "-W", "4096", "-H", "512"], "over the 8192 px limit"),
    ],
)
def test_bad_hires_values_exit_2_before_loading(cli, options: list[str], message: str) -> None:
    result = cli("generate", "a cat", "-m", "no/such-model", *options)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the error, and at most a hint


def test_hires_refuses_other_families_before_loading(cli, tmp_path: Path) -> None:
    folder = tmp_path / "flux"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    result = cli("generate", "a cat", "-m", folder, "--hires-scale", "2")
    assert result.exit_code == 2, result.stderr
    assert "hires fix is for SD 1.x/2.x and SDXL" in result.stderr


@pytest.mark.parametrize(
    ("steps", "strength", "schedule"),
    [(10, 0.7, (14, 10.5 / 14)), (20, 0.5, (40, 20.5 / 40)), (3, 1.0, (3, 1.0)), (2, 0.7, (2, 1.0))],
)
def test_hires_runs_exactly_its_steps_as_a1111(steps: int, strength: float, schedule: tuple) -> None:
    request = GenerationRequest("a cat", hires_scale=2, hires_steps=steps, hires_strength=strength)
    total, given = request.hires_schedule()
    assert (total, given) == pytest.approx(schedule)
    assert int(total * given) == steps  # diffusers' get_timesteps: the last `steps` of `total`


def test_hires_steps_0_are_the_main_steps() -> None:
    request = GenerationRequest("a cat", steps=30, hires_scale=2, hires_strength=0.7)
    assert request.hires_schedule() == (42, 30.5 / 42)


def test_worker_protocol_carries_the_hires_fix() -> None:
    request = GenerationRequest(
        "a cat", hires_scale=1.5, hires_steps=3, hires_strength=0.4, hires_upscaler="lanczos"
    ).validated()
    assert protocol.generation_from_json(protocol.generation_to_json(request)) == request


def test_other_families_are_refused_after_loading_too() -> None:
    from sdcli.errors import UsageError
    from sdcli.generation import engine
    from sdcli.model.families import FLUX, SD3, SDXL

    engine.check_hires_family(SDXL)
    for family in (FLUX, SD3):
        with pytest.raises(UsageError, match="hires fix is for SD 1.x/2.x and SDXL"):
            engine.check_hires_family(family)
