"""--control-preprocess depth: the depth map against transformers' own depth-estimation pipeline, a run
against a plain diffusers script given that map, the Hub cache and offline mode, bad --depth-model values."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.control_fixtures import script_pipe
from tests.png_helpers import params_and_record, pixels, script_args

DEFAULT = "depth-anything/Depth-Anything-V2-Small-hf"


def transformers_depth(folder: Path, image_path: Path) -> Image.Image:
    """What diffusers' ControlNet docs do: transformers' pipeline's `depth`, grey to 3 channels."""
    from transformers import pipeline

    with Image.open(image_path) as im:
        image = im.convert("RGB")
    depth = pipeline("depth-estimation", model=str(folder))(image)["depth"]
    grey = np.asarray(depth)[:, :, None]
    return Image.fromarray(np.concatenate([grey, grey, grey], axis=2))


def generate(cli, model: Path, *extra: object, out: str = "out.png"):
    return cli("generate", "a red boat", "-m", model, "--steps", "2", "--seed", "9", "-o", out, *extra)


def test_depth_map_equals_the_transformers_pipeline(tiny_depth: Path, control_image: Path) -> None:
    import torch

    from sdcli.model import depth

    estimator = depth.load(str(tiny_depth), tiny_depth, torch.device("cpu"))
    with Image.open(control_image) as im:
        mapped = estimator.depth_map(im.convert("RGB"))
    expected = transformers_depth(tiny_depth, control_image)
    assert mapped.mode == "RGB" and mapped.size == (80, 48)  # the control image's size
    assert np.array_equal(np.asarray(mapped), np.asarray(expected))
    assert np.asarray(mapped).min() == 0 and np.asarray(mapped).max() == 255
    assert (estimator.name, estimator.module) == ("tiny-Depth-Anything-V2", "depth_anything_v2")


def test_one_estimate_per_control_image(
    tiny_depth: Path, control_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from sdcli.core.control_specs import ControlNetSpec
    from sdcli.images import control_images
    from sdcli.model import depth

    estimator = depth.load(None, tiny_depth, torch.device("cpu"))
    calls = []
    forward = estimator.model.forward
    monkeypatch.setattr(estimator.model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    specs = (ControlNetSpec("cn", control_image), ControlNetSpec("cn", control_image, 0.5))
    first, _ = control_images.prepare(specs, "depth", 64, 64, estimator)
    again, _ = control_images.prepare(specs, "depth", 64, 64, estimator)  # the next prompt's run
    assert len(calls) == 1 and estimator.name == DEFAULT
    assert all(np.array_equal(np.asarray(a), np.asarray(first[0])) for a in [*first, *again])


def test_depth_controlnet_equals_plain_diffusers_given_the_map(
    cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path, tiny_depth: Path
) -> None:
    spec = f"{tiny_controlnet}:{control_image}:0.8"
    result = generate(
        cli, tiny_sd, "--controlnet", spec, "--control-preprocess", "depth", "--depth-model", tiny_depth
    )
    assert result.exit_code == 0, result.stderr
    pipe = script_pipe("StableDiffusionControlNetPipeline", tiny_sd, "ControlNetModel", tiny_controlnet)
    control = ImageOps.fit(transformers_depth(tiny_depth, control_image), (64, 64), Image.Resampling.LANCZOS)
    expected = pipe(
        "a red boat",
        image=control,
        controlnet_conditioning_scale=0.8,
        **script_args(steps=2, seed=9),
    ).images[0]
    assert np.array_equal(pixels("out.png"), np.asarray(expected))
    as_is = generate(cli, tiny_sd, "--controlnet", spec, out="none.png")
    assert as_is.exit_code == 0, as_is.stderr
    assert not np.array_equal(pixels("out.png"), pixels("none.png"))

    text, record = params_and_record("out.png")
    unit = record["controlnets"][0]
    assert (unit["preprocess"], unit["depth_model"], unit["module"]) == (
        "depth",
        "tiny-Depth-Anything-V2",
        "depth_anything_v2",
    )
    assert 'ControlNet 0: "Module: depth_anything_v2, Model: tiny-control' in text


def test_cached_hub_depth_model_offline(
    cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path, tiny_depth: Path
) -> None:
    from sdcli.hub.cache import repo_folder

    repo = repo_folder("test-org/tiny-depth")
    commit = "d" * 40
    shutil.copytree(tiny_depth, repo / "snapshots" / commit, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    args = ("--controlnet", f"{tiny_controlnet}:{control_image}", "--control-preprocess", "depth")
    hub = generate(cli, tiny_sd, *args, "--offline", "--depth-model", "test-org/tiny-depth", out="hub.png")
    local = generate(cli, tiny_sd, *args, "--depth-model", tiny_depth, out="local.png")
    assert hub.exit_code == 0 and local.exit_code == 0, hub.stderr + local.stderr
    assert np.array_equal(pixels("hub.png"), pixels("local.png"))
    assert params_and_record("hub.png")[1]["controlnets"][0]["depth_model"] == "test-org/tiny-depth"
    # `sdcli download` plans it as any other non-pipeline repo: its top-level configs and safetensors.
    listed = cli("download", "test-org/tiny-depth", "--offline", "--dry-run", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert "preprocessor_config.json" in listed.stdout and "model.safetensors" in listed.stdout


@pytest.mark.parametrize("depth_model", [None, "some-org/no-such-depth"])
def test_missing_depth_model_offline_is_exit_3_with_the_download_line(
    cli, tiny_sd: Path, tiny_controlnet: Path, control_image: Path, depth_model: str | None
) -> None:
    extra = ("--depth-model", depth_model) if depth_model else ()
    spec = f"{tiny_controlnet}:{control_image}"
    result = generate(
        cli, tiny_sd, "--offline", "--controlnet", spec, "--control-preprocess", "depth", *extra
    )
    assert result.exit_code == 3, result.stderr
    assert f"run `sdcli download {depth_model or DEFAULT}`" in result.stderr
    assert "Traceback" not in result.stderr and not Path("out.png").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("empty", "the folder has no config.json or preprocessor_config.json"),
        ("no-weights", "the folder holds no .safetensors weights"),
        ("file", "not a folder"),
        ("missing", "no such folder"),
        ("not-depth", "picks the estimator of --control-preprocess depth, not none"),
    ],
)
def test_bad_depth_model_is_exit_2_on_one_line_before_loading(
    cli, tiny_controlnet: Path, control_image: Path, tiny_depth: Path, tmp_path: Path, make: str, message: str
) -> None:
    folder = tmp_path / "depth"
    if make in ("empty", "no-weights"):
        folder.mkdir()
    if make == "no-weights":
        for name in ("config.json", "preprocessor_config.json"):
            shutil.copyfile(tiny_depth / name, folder / name)
    if make == "file":
        folder.write_text("x")
    preprocess = "none" if make == "not-depth" else "depth"
    given = tiny_depth if make == "not-depth" else folder
    spec = f"{tiny_controlnet}:{control_image}"
    result = cli(
        "generate",
        "a cat",
        "-m",
        "no/such-model",
        "-o",
        "x.png",
        "--controlnet",
        spec,
        "--control-preprocess",
        preprocess,
        "--depth-model",
        given,
    )
    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "no/such-model" not in result.stderr and not Path("x.png").exists()
