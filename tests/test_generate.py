"""`sdcli generate` end to end on tiny random-weight pipelines, through the CLI and the modules below it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.core.requests import GenerationRequest, ModelRequest
from sdcli.generation import engine
from sdcli.model import pipelines
from tests.png_helpers import pixels


def test_generate_writes_png_with_parameters(cli, tiny_sd: Path, tmp_path: Path) -> None:
    result = cli(
        "generate", "a cat wearing a hat", "-m", tiny_sd, "--steps", "2", "--seed", "42", "-n", "blurry"
    )
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    assert (tmp_path / path).parent == tmp_path / "outputs" and path.name.endswith(
        "-42-a_cat_wearing_a_hat.png"
    )
    with Image.open(path) as im:
        assert im.size == (64, 64)
        text = im.text
    lines = text["parameters"].splitlines()
    assert lines[0] == "a cat wearing a hat"
    assert lines[1] == "Negative prompt: blurry"
    assert lines[-1].startswith("Steps: 2, Sampler: ")
    for key in ("CFG scale: 7", "Seed: 42", "Size: 64x64", "Model: tiny-sd", "Version: sdcli "):
        assert key in lines[-1]
    record = json.loads(text["sdcli"])
    assert record["seed"] == 42 and record["steps"] == 2 and record["prompt"] == "a cat wearing a hat"
    assert record["schema"] == 1 and record["model"] == "tiny-sd"


def test_same_seed_same_pixels_and_other_seed_differs(cli, tiny_sd: Path) -> None:
    runs = [cli("generate", "a hat", "-m", tiny_sd, "--steps", "2", "--seed", s) for s in ("7", "7", "8")]
    assert all(r.exit_code == 0 for r in runs), [r.stderr for r in runs]
    first, again, other = (pixels(Path(r.stdout.strip())) for r in runs)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_run_of_n_equals_n_single_runs(tiny_sd: Path) -> None:
    model = pipelines.load_model(ModelRequest(str(tiny_sd)))

    def images(count: int, seed: int, batch_size: int = 1) -> list[np.ndarray]:
        request = GenerationRequest(
            "a dog", steps=2, seed=seed, count=count, batch_size=batch_size
        ).validated()
        return [np.asarray(g.image).astype(int) for g in engine.generate(model, request)]

    singles = [images(1, s)[0] for s in (5, 6, 7)]
    run = images(3, 5)
    assert all(np.array_equal(a, b) for a, b in zip(run, singles, strict=True))
    # One pipeline call for all three: the same noise per seed, but batched kernels may round differently.
    batched = images(3, 5, batch_size=3)
    assert all(np.abs(a - b).max() <= 2 for a, b in zip(batched, singles, strict=True))


def test_count_gives_consecutive_seeds_and_json_lines(cli, tiny_sd: Path) -> None:
    result = cli("generate", "a tree", "-m", tiny_sd, "--steps", "1", "--seed", "10", "-c", "2", "--json")
    assert result.exit_code == 0, result.stderr
    *records, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert summary["type"] == "summary" and summary["images"] == 2 and summary["failures"] == 0
    assert [r["type"] for r in records] == ["image", "image"]
    assert [r["seed"] for r in records] == [10, 11]
    assert [r["index"] for r in records] == [0, 1]
    assert all(Path(r["path"]).exists() and r["parameters"]["prompt"] == "a tree" for r in records)


def test_sdxl_pipeline_and_custom_size(cli, tiny_sdxl: Path) -> None:
    result = cli("generate", "a cat", "-m", tiny_sdxl, "--steps", "2", "-W", "48", "-H", "32", "-o", "x.png")
    assert result.exit_code == 0, result.stderr
    with Image.open("x.png") as im:
        assert im.size == (48, 32)
        assert json.loads(im.text["sdcli"])["pipeline"] == "StableDiffusionXLPipeline"


def test_prompt_from_stdin(cli, tiny_sd: Path) -> None:
    result = cli("generate", "-", "-m", tiny_sd, "--steps", "1", "-o", "s.png", input="a red boat\n")
    assert result.exit_code == 0, result.stderr
    with Image.open("s.png") as im:
        assert im.text["parameters"].startswith("a red boat\n")


def test_never_overwrites_unless_asked(cli, tiny_sd: Path, tmp_path: Path) -> None:
    (tmp_path / "taken.png").write_bytes(b"keep me")
    result = cli("generate", "a cat", "-m", tiny_sd, "--steps", "1", "-o", "taken.png")
    assert result.exit_code == 6
    assert "already exists" in result.stderr and "--overwrite" in result.stderr
    assert (tmp_path / "taken.png").read_bytes() == b"keep me"
    result = cli("generate", "a cat", "-m", tiny_sd, "--steps", "1", "-o", "taken.png", "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert pixels(tmp_path / "taken.png").shape == (64, 64, 3)


def test_default_names_never_collide(cli, tiny_sd: Path) -> None:
    args = ("generate", "same", "-m", tiny_sd, "--steps", "1", "--seed", "3", "-o", "out/")
    paths = [Path(cli(*args).stdout.strip()) for _ in range(2)]
    assert paths[0] != paths[1] and all(p.exists() for p in paths)
    assert not list(Path("out").glob(".*tmp"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--width", "30"), "--width must be a positive multiple of 8"),
        (("--height", "0"), "--height must be a positive multiple of 8"),
        (("--steps", "0"), "--steps must be at least 1"),
        (("--count", "0"), "--count must be at least 1"),
        (("--guidance", "-1"), "--guidance must be 0 or more"),
        (("--device", "tpu"), "--device 'tpu' is not a device"),
        (("--dtype", "int8"), "--dtype 'int8' is not one of"),
        (("-o", "x.jpg"), "only .png files"),
        (("-o", "{nope}.png"), "unknown key(s): nope"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(cli, args: tuple[str, ...], needle: str) -> None:
    result = cli("generate", "a cat", "-m", "some/model", *args)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_prompt_is_usage_error(cli) -> None:
    result = cli("generate")
    assert result.exit_code == 2 and "no prompt given" in result.stderr


@pytest.mark.parametrize("model", ["./no/such/folder", "not a repo id!"])
def test_unknown_model_exits_3(cli, model: str) -> None:
    result = cli("generate", "a cat", "-m", model, "--steps", "1")
    assert result.exit_code == 3, result.stderr
    assert model in result.stderr and "Traceback" not in result.stderr


def test_folder_without_model_index_exits_3(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = cli("generate", "a cat", "-m", tmp_path / "empty")
    assert result.exit_code == 3 and "model_index.json" in result.stderr


def test_uncached_hub_model_offline_fails_fast_with_download_hint(cli) -> None:
    result = cli("generate", "a cat", "-m", "someone/not-cached", "--offline")
    assert result.exit_code == 3
    assert (
        "someone/not-cached is not in the local cache; run `sdcli download someone/not-cached`"
        in result.stderr
    )


def test_old_runwayml_id_is_an_alias() -> None:
    assert ModelRequest("runwayml/stable-diffusion-v1-5").validated().model == (
        "stable-diffusion-v1-5/stable-diffusion-v1-5"
    )


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_pixels_are_a_plain_diffusers_scripts(cli, family: str, tiny_sd: Path, tiny_sdxl: Path) -> None:
    """`sdcli generate PROMPT` makes what `DiffusionPipeline.from_pretrained(dir)(PROMPT)` makes at the same
    seed and settings; for SDXL that means no negative prompt is zeros, as diffusers' SDXL config asks."""
    from tests.family_fixtures import plain_diffusers

    model = tiny_sd if family == "sd" else tiny_sdxl
    result = cli("generate", "a red boat", "-m", model, "--steps", "2", "--seed", "9", "-o", "x.png")
    assert result.exit_code == 0, result.stderr
    expected = plain_diffusers(model, "a red boat", 9, num_inference_steps=2, guidance_scale=7.0)
    assert np.array_equal(pixels("x.png").astype(int), expected)
