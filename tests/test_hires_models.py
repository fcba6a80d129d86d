"""`sdcli generate --hires-upscaler MODEL`: the hires fix with an upscaler model, through `sdcli upscale`'s
own code. A tiny random x4 diffusers upscaler against a plain diffusers script doing the same two passes,
the metadata and `--from`, and the refusals before loading.

The ESRGAN (spandrel) path is not run here: spandrel's torchvision does not install against the CPU torch
build, so only its missing-extra refusal is tested.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.png_helpers import params_and_record, pixels

FAST = ("--steps", "2", "-W", "64", "-H", "64", "--seed", "5", "--hires-scale", "2", "--hires-steps", "3")


def plain_diffusers_two_pass(tiny_sd: Path, tiny_x4: Path) -> np.ndarray:
    """The same run as a diffusers script: first pass, the x4 pipeline with the arguments sdcli gives it
    (the prompt, 20 steps, noise level 20, the image's seed), Lanczos to the hires size, then img2img."""
    import torch
    from diffusers import (
        StableDiffusionImg2ImgPipeline,
        StableDiffusionPipeline,
        StableDiffusionUpscalePipeline,
    )

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.set_progress_bar_config(disable=True)
    first = pipe(
        "a cat",
        width=64,
        height=64,
        num_inference_steps=2,
        guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(5),
    ).images[0]
    x4 = StableDiffusionUpscalePipeline.from_pretrained(tiny_x4)
    x4.set_progress_bar_config(disable=True)
    big = x4(
        prompt="a cat",
        negative_prompt=None,
        image=first,
        num_inference_steps=20,
        noise_level=20,
        generator=torch.Generator("cpu").manual_seed(5),
    ).images[0]
    assert big.size == (256, 256)
    image = big.resize((128, 128), Image.Resampling.LANCZOS)
    second = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
    # --hires-steps 3 at strength 0.7: the last 3 steps of int(3 / 0.7) = 4 (see tests/test_hires.py).
    final = second(
        "a cat",
        image=[image],
        num_inference_steps=4,
        strength=0.75,
        guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(5),
    ).images[0]
    return np.asarray(final.convert("RGB"))


def test_x4_hires_matches_plain_diffusers_and_from_remakes_it(
    cli, tiny_sd: Path, tiny_x4: Path, tmp_path: Path
) -> None:
    made = cli("generate", "a cat", "-m", tiny_sd, *FAST, "--hires-upscaler", tiny_x4, "-o", "a.png")
    assert made.exit_code == 0, made.stderr
    assert np.array_equal(pixels("a.png"), plain_diffusers_two_pass(tiny_sd, tiny_x4))

    text, record = params_and_record("a.png")
    line = text.splitlines()[-1]
    assert "Denoising strength: 0.7" in line  # A1111's default for every upscaler, a model's too
    assert "Hires upscale: 2, Hires steps: 3, Hires upscaler: tiny-x4" in line
    assert str(tmp_path) not in text and str(tiny_x4) not in json.dumps(record)  # a name, never a path
    assert record["hires_upscaler"] == "tiny-x4"
    assert record["hires_upscaler_model"] == {
        "kind": "pipeline",
        "pipeline": "StableDiffusionUpscalePipeline",
        "model_scale": 4,
        "steps": 20,
        "guidance": None,
        "noise_level": 20,
    }

    # --from looks for the upscaler by its name in the working folder: not there, refused.
    missing = cli("generate", "--from", "a.png", "-m", tiny_sd, "-o", "b.png")
    assert missing.exit_code == 2, missing.stderr
    assert "hires upscaler tiny-x4, which --from cannot find here" in missing.stderr
    assert missing.stderr.count("error:") == 1 and not Path("b.png").exists()

    (tmp_path / "tiny-x4").symlink_to(tiny_x4, target_is_directory=True)
    again = cli("generate", "--from", "a.png", "-m", tiny_sd, "-o", "b.png")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(pixels("a.png"), pixels("b.png"))
    assert params_and_record("b.png")[1]["hires_upscaler"] == "tiny-x4"

    # A1111's text alone names it the same way.
    with Image.open("a.png") as im:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("parameters", im.text["parameters"])
        Image.new("RGB", im.size).save("a1111.png", pnginfo=info)
    third = cli("generate", "--from", "a1111.png", "-m", tiny_sd, "-o", "c.png")
    assert third.exit_code == 0, third.stderr
    assert np.array_equal(pixels("a.png"), pixels("c.png"))


def test_a_hub_id_is_kept_and_a_path_in_a_record_is_not_followed(tmp_path: Path, monkeypatch) -> None:
    from sdcli.images import upscale

    monkeypatch.chdir(tmp_path)
    (tmp_path / "4x-UltraSharp.pth").write_bytes(b"")
    assert upscale.find_by_name("stabilityai/stable-diffusion-x4-upscaler") == (
        "stabilityai/stable-diffusion-x4-upscaler"
    )
    assert upscale.find_by_name("4x-UltraSharp") == "./4x-UltraSharp.pth"  # A1111's name: the file's stem
    assert upscale.find_by_name("R-ESRGAN 4x+") is None
    outside = tmp_path.parent / "elsewhere.safetensors"
    assert upscale.find_by_name(str(outside)) is None
    assert upscale.find_by_name("../elsewhere") is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("bicubic", "--hires-upscaler 'bicubic' is not an upscaler sdcli knows"),
        ("missing.safetensors", "--hires-upscaler missing.safetensors: no such file"),
        ("EMPTY", "--hires-upscaler EMPTY: no readable model_index.json"),
        ("SD", "is a StableDiffusionPipeline, not an upscaler"),
        ("4x-UltraSharp.pth", "need spandrel, which is not installed"),
        ("notes.txt", "not a .safetensors/.pth file or a folder"),
    ],
)
def test_bad_upscalers_exit_2_before_loading(cli, tmp_path: Path, value: str, words: str) -> None:
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "SD").mkdir()
    (tmp_path / "SD" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (tmp_path / "4x-UltraSharp.pth").write_bytes(b"\x80\x02}q\x00.")
    (tmp_path / "notes.txt").write_text("hello")
    result = cli("generate", "a cat", "-m", "no/such-model", "--hires-scale", "2", "--hires-upscaler", value)
    assert result.exit_code == 2, result.stderr
    assert words in result.stderr
    assert result.stderr.count("error:") == 1 and len(result.stderr.strip().splitlines()) <= 2
    if "spandrel" in words:
        assert "pip install 'sdcli[upscale]'" in result.stderr
    assert not (tmp_path / "outputs").exists()
