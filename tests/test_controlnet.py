"""--controlnet on the tiny SD pipeline: specs, pixels against plain diffusers, metadata, usage errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.core.control_specs import ControlNetSpec
from sdcli.errors import UsageError
from tests.control_fixtures import script_pipe
from tests.png_helpers import params_and_record, pixels, script_args


def run(cli, model: Path, *extra: object, out: str = "out.png"):
    return cli("generate", "a red boat", "-m", model, "--steps", "2", "--seed", "9", "-o", out, *extra)


@pytest.mark.parametrize(
    ("text", "source", "image", "numbers"),
    [
        ("cn:img.png", "cn", "img.png", (1.0, 0.0, 1.0)),
        ("cn:img.png:0.5", "cn", "img.png", (0.5, 0.0, 1.0)),
        ("cn:img.png:0.5:0.1:0.9", "cn", "img.png", (0.5, 0.1, 0.9)),
        ("org/repo:a/b.png:2", "org/repo", "a/b.png", (2.0, 0.0, 1.0)),
        ("./c.safetensors:/x/y.png:1e-1:0:1", "./c.safetensors", "/x/y.png", (0.1, 0.0, 1.0)),
        ("cn:img.png:nan", "cn", "img.png", (float("nan"), 0.0, 1.0)),
    ],
)
def test_spec_parsing(text: str, source: str, image: str, numbers: tuple[float, float, float]) -> None:
    spec = ControlNetSpec.parse(text)
    assert (spec.source, spec.image) == (source, Path(image))
    np.testing.assert_equal((spec.scale, spec.start, spec.end), numbers)


def test_spec_splits_where_the_image_exists(tmp_path: Path) -> None:
    (tmp_path / "we:ird.png").write_bytes(b"x")
    spec = ControlNetSpec.parse(f"my-cn:{tmp_path}/we:ird.png:0.7")
    assert (spec.source, spec.image, spec.scale) == ("my-cn", tmp_path / "we:ird.png", 0.7)


@pytest.mark.parametrize("text", ["cn", "cn:img.png:1:0", ":img.png"])
def test_bad_spec_shapes(text: str) -> None:
    with pytest.raises(UsageError):
        ControlNetSpec.parse(text)


def test_pixels_equal_plain_diffusers(cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path) -> None:
    result = run(cli, tiny_sd, "--controlnet", f"{tiny_controlnet}:{control_image}:0.8:0:0.5")
    assert result.exit_code == 0, result.stderr
    pipe = script_pipe("StableDiffusionControlNetPipeline", tiny_sd, "ControlNetModel", tiny_controlnet)
    with Image.open(control_image) as im:
        control = im.convert("RGB")
    from PIL import ImageOps

    control = ImageOps.fit(control, (64, 64), method=Image.Resampling.LANCZOS)
    expected = pipe(
        "a red boat",
        image=control,
        controlnet_conditioning_scale=0.8,
        control_guidance_start=0.0,
        control_guidance_end=0.5,
        **script_args(steps=2, seed=9),
    ).images[0]
    assert np.array_equal(pixels("out.png"), np.asarray(expected))

    plain = run(cli, tiny_sd, out="plain.png")
    assert plain.exit_code == 0, plain.stderr
    assert not np.array_equal(pixels("out.png"), pixels("plain.png"))


def test_scale_zero_is_the_image_without_controlnet(
    cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path
) -> None:
    zero = run(cli, tiny_sd, "--controlnet", f"{tiny_controlnet}:{control_image}:0", out="zero.png")
    plain = run(cli, tiny_sd, out="plain.png")
    assert zero.exit_code == 0 and plain.exit_code == 0, zero.stderr + plain.stderr
    assert np.array_equal(pixels("zero.png"), pixels("plain.png"))


def test_metadata(cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path) -> None:
    result = run(
        cli,
        tiny_sd,
        "--controlnet",
        f"{tiny_controlnet}:{control_image}:0.8:0.1:0.9",
        "--controlnet",
        f"{tiny_controlnet}:{control_image}",
    )
    assert result.exit_code == 0, result.stderr
    params, record = params_and_record("out.png")
    first, second = record["controlnets"]
    assert record["pipeline"] == "StableDiffusionControlNetPipeline"
    assert first["name"] == "tiny-control" and len(first["hash"]) == 10
    assert (first["scale"], first["start"], first["end"], first["preprocess"]) == (0.8, 0.1, 0.9, "none")
    assert first["image"]["name"] == "edges.png" and len(first["image"]["hash"]) == 10
    assert (second["scale"], second["start"], second["end"]) == (1.0, 0.0, 1.0)
    assert (
        f'ControlNet 0: "Module: none, Model: tiny-control [{first["hash"]}], Weight: 0.8, '
        f'Guidance Start: 0.1, Guidance End: 0.9"'
    ) in params
    assert 'ControlNet 1: "Module: none, Model: tiny-control' in params


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{cn}:missing.png", "missing.png: no such file"),
        ("{cn}:{img}:1:0.8:0.2", "START 0.8 is after END 0.2"),
        ("{cn}:{img}:inf", "the scale must be a finite number"),
        ("{cn}:{img}:1:0:2", "between 0 and 1"),
        ("./no/such/cn:{img}", "no such file or folder"),
        ("{cn}:{img}:1:0", "not two numbers"),
    ],
)
def test_bad_specs_exit_2_before_loading(
    cli, tiny_controlnet: Path, control_image: Path, spec: str, message: str
) -> None:
    text = spec.format(cn=tiny_controlnet, img=control_image)
    result = cli("generate", "a cat", "-m", "no/such-model", "--controlnet", text)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert "no/such-model" not in result.stderr  # it failed before the model was looked for


def test_unreadable_control_image_and_bad_preprocess_exit_2(
    cli, tiny_controlnet: Path, tmp_path: Path, control_image: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = cli("generate", "a cat", "-m", "no/such-model", "--controlnet", f"{tiny_controlnet}:{broken}")
    assert result.exit_code == 2 and "broken.png" in result.stderr
    result = cli(
        "generate",
        "a cat",
        "-m",
        "no/such-model",
        "--controlnet",
        f"{tiny_controlnet}:{control_image}",
        "--control-preprocess",
        "hed",
    )
    assert result.exit_code == 2 and "--control-preprocess 'hed'" in result.stderr


def fitted(path: Path, width: int, height: int) -> Image.Image:
    from PIL import ImageOps

    with Image.open(path) as im:
        return ImageOps.fit(im.convert("RGB"), (width, height), method=Image.Resampling.LANCZOS)


def test_img2img_pixels_equal_plain_diffusers(
    cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    photo = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photo)
    args = (
        "--steps",
        "4",
        "--seed",
        "3",
        "-o",
        "out.png",
        "--controlnet",
        f"{tiny_controlnet}:{control_image}",
    )
    result = cli("img2img", "a red boat", photo, "-m", tiny_sd, *args)
    assert result.exit_code == 0, result.stderr
    params, record = params_and_record("out.png")
    assert record["pipeline"] == "StableDiffusionControlNetImg2ImgPipeline"
    assert record["controlnets"][0]["image"]["name"] == "edges.png"

    pipe = script_pipe(
        "StableDiffusionControlNetImg2ImgPipeline", tiny_sd, "ControlNetModel", tiny_controlnet
    )
    with Image.open(photo) as im:
        init = im.convert("RGB")
    expected = pipe(
        "a red boat",
        image=init,
        control_image=fitted(control_image, 64, 48),
        controlnet_conditioning_scale=1.0,  # this pipeline's own default is 0.8; --controlnet's is 1
        strength=0.75,
        **script_args(steps=4, seed=3, width=64, height=48),
    ).images[0]
    assert np.array_equal(pixels("out.png"), np.asarray(expected))


def test_inpaint_with_controlnet(
    cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path, tmp_path: Path
) -> None:
    photo, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photo)
    painted = Image.new("L", (64, 48), 0)
    painted.paste(255, (32, 0, 64, 48))
    painted.save(mask)
    common = (photo, mask, "a dog", "-m", tiny_sd, "--steps", "2", "--seed", "2", "--strength", "1")
    result = cli("inpaint", *common, "-o", "cn.png", "--controlnet", f"{tiny_controlnet}:{control_image}")
    assert result.exit_code == 0, result.stderr
    plain = cli("inpaint", *common, "-o", "plain.png")
    assert plain.exit_code == 0, plain.stderr
    _params, record = params_and_record("cn.png")
    assert record["pipeline"] == "StableDiffusionControlNetInpaintPipeline"
    out, original = pixels("cn.png"), pixels(photo)
    assert np.abs(out[:, :24].astype(int) - original[:, :24]).mean() < 1  # the kept half is kept
    assert not np.array_equal(out, pixels("plain.png"))


def test_from_warns_when_controlnets_are_not_given_again(
    cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path
) -> None:
    result = run(cli, tiny_sd, "--controlnet", f"{tiny_controlnet}:{control_image}:0.5", out="a.png")
    assert result.exit_code == 0, result.stderr
    from_a = ("generate", "--from", "a.png", "-m", tiny_sd)
    again = cli(*from_a, "-o", "b.png")
    assert again.exit_code == 0, again.stderr
    assert "ControlNet tiny-control" in again.stderr and "pass --controlnet again" in again.stderr
    with_it = cli(*from_a, "-o", "c.png", "--controlnet", f"{tiny_controlnet}:{control_image}:0.5")
    assert with_it.exit_code == 0, with_it.stderr
    assert "ControlNet" not in with_it.stderr
    assert np.array_equal(pixels("a.png"), pixels("c.png"))


def test_canny_without_opencv_exits_2_with_the_pip_line(
    cli, tiny_controlnet: Path, control_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    spec = f"{tiny_controlnet}:{control_image}"
    result = cli(
        "generate", "a cat", "-m", "no/such-model", "--controlnet", spec, "--control-preprocess", "canny"
    )
    assert result.exit_code == 2, result.stderr
    assert "needs OpenCV" in result.stderr and "pip install 'sdcli[control]'" in result.stderr


def test_canny_map_with_a_stand_in_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    """The map is cv2.Canny of the grey image at A1111's thresholds, as white-on-black RGB."""
    import sys
    import types

    from sdcli.images import control_images

    seen = {}

    def canny(grey: np.ndarray, low: int, high: int) -> np.ndarray:
        seen.update(shape=grey.shape, thresholds=(low, high))
        return np.where(grey > 127, 255, 0).astype(np.uint8)

    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(Canny=canny))
    image = Image.new("RGB", (16, 8), (200, 200, 200))
    mapped = control_images.control_map(image, "canny")
    assert mapped.mode == "RGB" and mapped.size == (16, 8)
    assert seen == {"shape": (8, 16), "thresholds": (100, 200)}
    assert control_images.control_map(image, "none") is image


def test_a1111_controlnet_units_read_back() -> None:
    from sdcli.images import metadata

    text = (
        "a house\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
        'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.8, '
        'Guidance Start: 0.1, Guidance End: 0.9", '
        'ControlNet 1: "Module: none, Model: depth, Weight: x, Guidance Start: 0, Guidance End: inf"'
    )
    record = metadata.record_from_a1111(metadata.parse_a1111(text))
    assert record["controlnets"] == [
        {
            "name": "control_v11p_sd15_canny",
            "hash": "d14c016b",
            "scale": 0.8,
            "start": 0.1,
            "end": 0.9,
            "preprocess": "canny",
        },
        {"name": "depth", "hash": None, "scale": 1.0, "start": 0.0, "end": 1.0, "preprocess": "none"},
    ]
    written = metadata.a1111_parameters({"prompt": "a house", **record})
    assert 'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.8' in written


def test_sdxl_pixels_equal_plain_diffusers(cli, tiny_sdxl: Path, control_image: Path, tmp_path: Path) -> None:
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for name, param in controlnet.named_parameters():
            if "controlnet_down_blocks" in name or "controlnet_mid_block" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    folder = tmp_path / "xl-control"
    controlnet.save_pretrained(folder)
    result = cli(
        "generate",
        "a red boat",
        "-m",
        tiny_sdxl,
        "--steps",
        "2",
        "--seed",
        "4",
        "-o",
        "xl.png",
        "--controlnet",
        f"{folder}:{control_image}:0.7",
    )
    assert result.exit_code == 0, result.stderr
    _params, record = params_and_record("xl.png")
    assert record["pipeline"] == "StableDiffusionXLControlNetPipeline"
    pipe = script_pipe("StableDiffusionXLControlNetPipeline", tiny_sdxl, "ControlNetModel", folder)
    size = pixels("xl.png").shape
    # sdcli encodes SDXL prompts itself (A1111's way: its empty negative is encoded, not zeros), so the
    # plain script takes the same embeddings: what is compared is the ControlNet's part.
    from sdcli.generation import prompts

    texts = prompts.encode(pipe, "a red boat", "", weighting="a1111", clip_skip=1, long=True).batch(1)
    expected = pipe(
        **texts,
        image=fitted(control_image, size[1], size[0]),
        controlnet_conditioning_scale=0.7,
        **script_args(steps=2, seed=4, width=size[1], height=size[0]),
    ).images[0]
    plain = cli("generate", "a red boat", "-m", tiny_sdxl, "--steps", "2", "--seed", "4", "-o", "plain.png")
    assert plain.exit_code == 0, plain.stderr
    assert not np.array_equal(pixels("xl.png"), pixels("plain.png"))
    assert np.array_equal(pixels("xl.png"), np.asarray(expected))


def test_two_controlnets_equal_plain_multicontrolnet(
    cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path, tmp_path: Path
) -> None:
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    second = tmp_path / "second.png"
    Image.fromarray(np.random.default_rng(8).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(second)
    result = run(
        cli,
        tiny_sd,
        "--controlnet",
        f"{tiny_controlnet}:{control_image}:0.6:0:0.5",
        "--controlnet",
        f"{tiny_controlnet}:{second}:1.2:0.5:1",
    )
    assert result.exit_code == 0, result.stderr
    controlnet = ControlNetModel.from_pretrained(tiny_controlnet)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(tiny_sd, controlnet=[controlnet, controlnet])
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        "a red boat",
        image=[fitted(control_image, 64, 64), fitted(second, 64, 64)],
        controlnet_conditioning_scale=[0.6, 1.2],
        control_guidance_start=[0.0, 0.5],
        control_guidance_end=[0.5, 1.0],
        **script_args(steps=2, seed=9),
    ).images[0]
    assert np.array_equal(pixels("out.png"), np.asarray(expected))


def test_single_safetensors_file_with_its_config_beside_it(
    cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path
) -> None:
    spec = f"{tiny_controlnet}:{control_image}:0.8"
    weights = tiny_controlnet / "diffusion_pytorch_model.safetensors"
    folder = run(cli, tiny_sd, "--controlnet", spec, out="folder.png")
    single = run(cli, tiny_sd, "--controlnet", f"{weights}:{control_image}:0.8", out="file.png")
    assert folder.exit_code == 0 and single.exit_code == 0, folder.stderr + single.stderr
    assert np.array_equal(pixels("folder.png"), pixels("file.png"))
    (_, a), (_, b) = params_and_record("folder.png"), params_and_record("file.png")
    assert a["controlnets"][0]["hash"] == b["controlnets"][0]["hash"]


def test_worker_refuses_controlnets() -> None:
    from sdcli.core.requests import ModelRequest
    from sdcli.worker import protocol

    data = {
        **protocol.model_to_json(ModelRequest()),
        "controlnets": [{"source": "x", "image": "/etc/passwd"}],
    }
    with pytest.raises(protocol.BadRequest, match="does not run ControlNets"):
        protocol.model_from_json(data)
    assert protocol.model_from_json(protocol.model_to_json(ModelRequest())) == ModelRequest().validated()


def test_cached_hub_controlnet(cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path) -> None:
    import shutil

    from sdcli.hub.cache import repo_folder

    repo = repo_folder("test-org/tiny-control")
    commit = "c" * 40
    shutil.copytree(tiny_controlnet, repo / "snapshots" / commit, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    local = run(cli, tiny_sd, "--controlnet", f"{tiny_controlnet}:{control_image}", out="local.png")
    hub = run(
        cli, tiny_sd, "--offline", "--controlnet", f"test-org/tiny-control:{control_image}", out="hub.png"
    )
    assert local.exit_code == 0 and hub.exit_code == 0, local.stderr + hub.stderr
    assert np.array_equal(pixels("local.png"), pixels("hub.png"))
    _params, record = params_and_record("hub.png")
    assert record["controlnets"][0]["name"] == "test-org/tiny-control"
