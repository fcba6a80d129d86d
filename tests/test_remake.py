"""Metadata written by `generate`, and `generate --from IMAGE` making the same image again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdcli.images import metadata


def read(path: str | Path) -> tuple[np.ndarray, dict]:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), json.loads(im.text["sdcli"])


@pytest.mark.parametrize(
    "prompt",
    [
        "a cat wearing a hat",
        'a cat,\nwearing: a "hat" \\ with (weights:1.2)',
        "一只戴帽子的猫 🐱🎩",
    ],
)
def test_round_trip_through_a_real_image(cli, tiny_sd: Path, prompt: str) -> None:
    negative = "blurry, low: quality\nsecond line"
    result = cli(
        "generate", prompt, "-n", negative, "-m", tiny_sd, "--steps", "2", "--seed", "9", "-o", "a.png"
    )
    assert result.exit_code == 0, result.stderr
    meta = metadata.read_metadata("a.png")
    assert meta.source == "sdcli" and meta.prompt == prompt and meta.negative == negative
    assert meta.parameters["Steps"] == 2 and meta.parameters["Seed"] == 9
    assert meta.parameters["Width"] == 64 and meta.parameters["Model"] == "tiny-sd"
    assert meta.parameters["RNG"] == "CPU"
    a1111 = metadata.parse_a1111(meta.raw["parameters"])
    assert (a1111.prompt, a1111.negative) == (prompt, negative)


def test_from_image_is_pixel_identical_and_options_override(cli, tiny_sd: Path) -> None:
    args = ("-m", tiny_sd, "--steps", "3", "--seed", "1234", "--cfg", "5.5", "-W", "48", "-H", "64")
    assert cli("generate", "a red boat", "-n", "fog", *args, "-o", "orig.png").exit_code == 0
    result = cli("generate", "--from", "orig.png", "-m", tiny_sd, "-o", "again.png")
    assert result.exit_code == 0, result.stderr
    (orig, orig_record), (again, again_record) = read("orig.png"), read("again.png")
    assert np.array_equal(orig, again)
    for key in ("prompt", "negative", "steps", "guidance", "seed", "width", "height", "scheduler", "sampler"):
        assert orig_record[key] == again_record[key], key

    result = cli(
        "generate", "--from", "orig.png", "-m", tiny_sd, "--seed", "99", "--steps", "2", "-o", "new.png"
    )
    assert result.exit_code == 0, result.stderr
    pixels, record = read("new.png")
    assert (record["seed"], record["steps"], record["prompt"], record["guidance"]) == (
        99,
        2,
        "a red boat",
        5.5,
    )
    assert not np.array_equal(orig, pixels)


def test_from_an_a1111_image(cli, tiny_sd: Path) -> None:
    info = PngInfo()
    info.add_text(
        "parameters",
        "a lighthouse at dusk\nNegative prompt: people\n"
        "Steps: 2, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 77, Size: 48x32, "
        "Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Version: v1.10.1",
    )
    Image.new("RGB", (48, 32)).save("a1111.png", pnginfo=info)
    result = cli("generate", "--from", "a1111.png", "-m", tiny_sd, "-o", "remade.png")
    assert result.exit_code == 0, result.stderr
    pixels, record = read("remade.png")
    assert pixels.shape == (32, 48, 3)
    assert (record["prompt"], record["negative"], record["seed"], record["steps"]) == (
        "a lighthouse at dusk",
        "people",
        77,
        2,
    )
    assert (record["sampler"], record["schedule"], record["guidance"]) == ("DPM++ 2M", "Karras", 6.0)


def test_from_needs_a_readable_image_with_parameters(cli, tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save("plain.png")
    Path("notes.png").write_text("not an image")
    for name, needle in (
        ("plain.png", "carries no generation parameters"),
        ("notes.png", "not a PNG, JPEG or WebP"),
        ("missing.png", "no such file"),
    ):
        result = cli("generate", "--from", name)
        assert result.exit_code == 2, (name, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr


def test_no_private_paths_or_tokens_in_the_png(cli, tiny_sd: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_fakeSECRET123")
    result = cli("generate", "a cat", "-m", tiny_sd, "--steps", "1", "-o", "p.png")
    assert result.exit_code == 0, result.stderr
    data = Path("p.png").read_bytes()
    for secret in (str(tiny_sd.parent), str(Path.home()), "hf_fakeSECRET123", str(Path.cwd())):
        assert secret.encode() not in data, secret
    assert "hf_fakeSECRET123" not in result.stdout + result.stderr


def test_no_metadata_writes_no_text_chunks(cli, tiny_sd: Path) -> None:
    assert (
        cli("generate", "a cat", "-m", tiny_sd, "--steps", "1", "--no-metadata", "-o", "n.png").exit_code == 0
    )
    with Image.open("n.png") as im:
        assert im.text == {}
    assert b"tEXt" not in Path("n.png").read_bytes() and b"iTXt" not in Path("n.png").read_bytes()
