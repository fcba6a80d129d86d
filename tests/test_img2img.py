"""`sdcli img2img` and `sdcli inpaint` on tiny random-weight pipelines, and the input reading below them.

The tiny models' VAE is random, so an output is never *like* its input; what the tests check is the part
sdcli owns: which inputs are read and how, sizes, strength ordering, seeds, the kept area, names, metadata.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.core.requests import GenerationRequest
from sdcli.errors import UsageError
from sdcli.images import inputs, outputs

# -- helpers -------------------------------------------------------------------------------------------------


def gradient(width: int = 70, height: int = 50) -> Image.Image:
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), 255 - xx * 2], -1)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def save(image: Image.Image, path: Path, fmt: str = "PNG", **kwargs: object) -> Path:
    image.save(path, format=fmt, **kwargs)
    return path


def pixels(path: Path | str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def written(result) -> list[Path]:
    return [Path(line) for line in result.stdout.splitlines()]


def png_with_declared_size(width: int, height: int) -> bytes:
    """A valid-looking PNG header that declares `width` x `height` with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored 64x48, left half red and right half blue, with EXIF orientation 6 (show rotated 90 deg CW)."""
    stored = Image.new("RGB", (64, 48), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 32, 48))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, format="JPEG", exif=exif, quality=95)
    return path


# -- reading inputs ------------------------------------------------------------------------------------------


def test_cmyk_palette_rgba_la_and_16_bit_inputs_become_rgb(tmp_path: Path) -> None:
    cmyk = save(Image.new("CMYK", (24, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", "JPEG", quality=95)
    palette = Image.new("P", (24, 16), 0)
    palette.putpalette([10, 200, 30] + [0] * 765)
    rgba = Image.new("RGBA", (24, 16), (0, 0, 255, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 12, 16))  # left half fully transparent
    la = Image.new("LA", (24, 16), (0, 0))
    deep = Image.fromarray(np.full((16, 24), 32896, dtype=np.uint16))  # 16-bit mid gray
    cases = {
        save(palette, tmp_path / "palette.png"): (10, 200, 30),
        save(rgba, tmp_path / "rgba.png"): None,
        save(la, tmp_path / "la.png"): (255, 255, 255),
        save(deep, tmp_path / "deep.png"): (128, 128, 128),
    }
    red = np.asarray(inputs.read_image(cmyk).image).astype(int)
    assert inputs.read_image(cmyk).image.mode == "RGB"
    assert np.abs(red - [255, 0, 0]).max() <= 8
    for path, colour in cases.items():
        image = inputs.read_image(path).image
        assert image.mode == "RGB" and image.size == (24, 16), path.name
        if colour is not None:
            assert np.abs(np.asarray(image).astype(int) - colour).max() <= 1, path.name
    flat = np.asarray(inputs.read_image(tmp_path / "rgba.png").image)
    assert (flat[:, :12] == 255).all() and (flat[:, 12:] == [0, 0, 255]).all()  # alpha flattened on white


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    upright = np.asarray(inputs.read_image(exif_rotated_jpeg(tmp_path / "phone.jpg")).image).astype(int)
    assert upright.shape == (64, 48, 3)
    # Turned 90 deg clockwise, the stored left half (red) is on top.
    assert np.abs(upright[:24].mean((0, 1)) - [255, 0, 0]).max() < 10
    assert np.abs(upright[40:].mean((0, 1)) - [0, 0, 255]).max() < 10


def test_mask_transparency_counts_as_kept(tmp_path: Path) -> None:
    drawn = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    drawn.paste((255, 255, 255, 255), (8, 0, 16, 16))
    mask = inputs.read_mask(save(drawn, tmp_path / "mask.png")).image
    assert mask.mode == "L"
    assert (np.asarray(mask)[:, :8] == 0).all() and (np.asarray(mask)[:, 8:] == 255).all()


def test_file_hash_and_name_without_folder(tmp_path: Path) -> None:
    import hashlib

    path = save(gradient(), tmp_path / "photo.png")
    item = inputs.read_image(path)
    assert item.record == {"name": "photo.png", "hash": hashlib.sha256(path.read_bytes()).hexdigest()[:10]}


def test_expand_files_folders_and_globs(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("b.png", "a.JPG", "c.webp", "notes.txt", "._a.png"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    found, problems = inputs.expand(
        [str(folder), str(folder / "b.png"), str(tmp_path / "in" / "*.png"), str(tmp_path / "empty")]
    )
    assert [p.name for p in found] == ["a.JPG", "b.png", "c.webp"]  # sorted, each once, no captions/dotfiles
    assert [str(p) for p in problems] == [f"{tmp_path / 'empty'}: folder has no PNG, JPEG or WebP images"]
    found, problems = inputs.expand([str(tmp_path / "*.gif"), str(tmp_path / "missing.png")])
    assert found == [tmp_path / "missing.png"]  # a named file is reported when read
    assert "no PNG, JPEG or WebP files match" in str(problems[0])


# -- sizes ---------------------------------------------------------------------------------------------------


def test_default_size_is_trimmed_to_multiples_of_8_without_resampling() -> None:
    image = gradient(70, 50)
    out = inputs.conform(image, None, None)
    assert out.size == (64, 48)
    assert np.array_equal(np.asarray(out), np.asarray(image)[1:49, 3:67])  # centred crop, pixels exact


@pytest.mark.parametrize(
    ("width", "height", "expected"), [(None, None, (64, 48)), (128, None, (128, 88)), (None, 24, (32, 24))]
)
def test_target_size_keeps_the_aspect_when_one_side_is_given(width, height, expected) -> None:
    assert inputs.target_size((70, 50), width, height) == expected


def test_resize_modes() -> None:
    wide = Image.new("RGB", (80, 40), (0, 0, 0))
    fit = np.asarray(inputs.conform(wide, 64, 64, "fit"))
    assert fit.shape == (64, 64, 3)
    assert (fit[:12] == 255).all() and (fit[-12:] == 255).all() and (fit[20:44] == 0).all()  # letterboxed
    crop = np.asarray(inputs.conform(wide, 64, 64, "crop"))
    assert crop.shape == (64, 64, 3) and (crop == 0).all()  # covers the frame, overflow cut
    assert inputs.conform(wide, 32, 64, "stretch").size == (32, 64)
    with pytest.raises(UsageError, match="--resize 'zoom' is not one of crop, fit, stretch"):
        inputs.check_resize("zoom")


def test_inpaint_mask_follows_the_image_and_fit_margins_are_kept() -> None:
    image = Image.new("RGB", (80, 40), (0, 0, 0))
    mask = Image.new("L", (20, 10), 255)  # drawn at a quarter of the size
    init, prepared = inputs.prepare_inpaint(image, mask, 64, 64, "fit", blur=0)
    assert init.size == prepared.size == (64, 64)
    m = np.asarray(prepared)
    assert (m[:12] == 0).all() and (m[-12:] == 0).all() and (m[20:44] == 255).all()
    _, blurred = inputs.prepare_inpaint(image, mask, 64, 64, "fit", blur=4)
    edge = np.asarray(blurred)[8:24, 32]  # across the top edge, at row 16
    assert 0 < edge.min() < 128 < edge.max() <= 255  # a soft edge, not a step


def test_too_few_steps_for_the_strength_fails_before_loading() -> None:
    with pytest.raises(UsageError, match="--strength 0.1 of --steps 5 runs no denoising step"):
        GenerationRequest("x", steps=5, strength=0.1).validated()
    GenerationRequest("x", steps=10, strength=0.1).validated()


def test_several_inputs_get_input_in_given_names() -> None:
    plan = outputs.plan("out/{seed}.png", count=1, per_input=True)
    assert plan.template == "{seed}-{input}.png"
    assert outputs.plan("x.png", count=2, per_input=True).template == "x-{input}-{index}.png"
    assert outputs.plan(None, count=1, default_name=outputs.INPUT_NAME).template == outputs.INPUT_NAME


# -- bad inputs through the CLI ------------------------------------------------------------------------------


def _gif_named_png(path: Path) -> None:
    Image.new("RGB", (16, 16)).save(path, format="GIF")


def _truncated_png(path: Path) -> None:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    gradient(64, 64).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


BAD_INPUTS = {
    "missing": (None, "no such file"),
    "zero-byte": (lambda p: p.write_bytes(b""), "empty file"),
    "text": (lambda p: p.write_text("not an image\n"), "not a PNG, JPEG or WebP image"),
    "gif": (_gif_named_png, "not a PNG, JPEG or WebP image"),
    "truncated-png": (_truncated_png, "damaged or truncated image"),
    "truncated-jpeg": (_truncated_jpeg, "damaged or truncated image"),
    "bomb": (lambda p: p.write_bytes(png_with_declared_size(100_000, 100_000)), "is too large"),
    "tiny": (lambda p: Image.new("RGB", (7, 30)).save(p, format="PNG"), "too small"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(cli, tmp_path: Path, case: str) -> None:
    make, needle = BAD_INPUTS[case]
    suffix = ".jpg" if case == "truncated-jpeg" else ".png"
    path = tmp_path / f"{case}{suffix}"
    if make:
        make(path)
    before = sorted(tmp_path.rglob("*"))
    result = cli("img2img", "a cat", path, "-m", "some/model")
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {path}: {lines[0].split(': ', 2)[2]}"] and needle in lines[0], lines
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before


def test_folder_without_images_exits_2(cli, tmp_path: Path) -> None:
    (tmp_path / "captions").mkdir()
    (tmp_path / "captions" / "a.txt").write_text("a cat")
    result = cli("img2img", "a cat", "captions", "-m", "some/model")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: captions: folder has no PNG, JPEG or WebP images"


# 1600 pixels: past Pillow's warning limit only (1000), and past its error limit too (2 x 500).
@pytest.mark.parametrize("limit", [1000, 500])
def test_decompression_bomb_limit_is_an_error(cli, tmp_path: Path, monkeypatch, limit: int) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    save(gradient(40, 40), tmp_path / "big.png")
    result = cli("img2img", "a cat", "big.png", "-m", "some/model")
    assert result.exit_code == 2 and "too large" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_errors_before_loading(cli, tmp_path: Path) -> None:
    save(gradient(), tmp_path / "a.png")
    save(gradient(), tmp_path / "b.png")
    result = cli("img2img", "a.png", "b.png", "-m", "some/model")
    assert result.exit_code == 2 and "the prompt 'a.png' is an image file" in result.stderr
    result = cli("img2img", "a cat", "a.png", "--resize", "zoom", "-m", "some/model")
    assert result.exit_code == 2 and "--resize 'zoom'" in result.stderr
    result = cli("img2img", "a cat", "a.png", "--strength", "0", "-m", "some/model")
    assert result.exit_code == 2 and "--strength must be in (0, 1]" in result.stderr
    result = cli("inpaint", "a.png", "b.png", "a cat", "--mask-blur", "-1", "-m", "some/model")
    assert result.exit_code == 2 and "--mask-blur must be 0 or more" in result.stderr
    result = cli("inpaint", "a.png", "nope.png", "a cat", "-m", "some/model")
    assert result.exit_code == 2 and result.stderr.strip() == "error: nope.png: no such file"
    assert not Path("outputs").exists()


# -- img2img end to end --------------------------------------------------------------------------------------


def test_strength_decides_how_far_the_output_moves(cli, tiny_sd: Path, tmp_path: Path) -> None:
    source = save(gradient(64, 64), tmp_path / "in.png")
    distance = {}
    for strength in ("0.1", "0.9"):  # 10 steps: 0.1 runs one step, 0.9 nine
        result = cli(
            "img2img", "a cat", source, "-m", tiny_sd, "--steps", "10", "--strength", strength, "--seed", "3"
        )
        assert result.exit_code == 0, result.stderr
        distance[strength] = np.abs(pixels(written(result)[0]) - pixels(source)).mean()
    assert distance["0.1"] < distance["0.9"]


def test_same_seed_same_output_and_size_follows_the_input(cli, tiny_sd: Path, tmp_path: Path) -> None:
    save(gradient(70, 50), tmp_path / "photo.png")
    runs = [cli("img2img", "a cat", "photo.png", "-m", tiny_sd, "--steps", "2", "--seed", s) for s in "778"]
    assert all(r.exit_code == 0 for r in runs), [r.stderr for r in runs]
    first, again, other = (written(r)[0] for r in runs)
    assert first.parent == Path("outputs") and first.name.endswith("-photo-7.png")
    assert pixels(first).shape == (48, 64, 3)  # 70x50 trimmed to 64x48
    assert np.array_equal(pixels(first), pixels(again)) and not np.array_equal(pixels(first), pixels(other))


def test_exif_rotated_input_gives_an_upright_output(cli, tiny_sd: Path, tmp_path: Path) -> None:
    exif_rotated_jpeg(tmp_path / "phone.jpg")
    result = cli("img2img", "a cat", "phone.jpg", "-m", tiny_sd, "--steps", "2", "-o", "up.png")
    assert result.exit_code == 0, result.stderr
    with Image.open("up.png") as im:
        assert im.size == (48, 64)


def test_folder_with_a_corrupt_file_writes_the_others_and_exits_2(cli, tiny_sd: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    save(gradient(), folder / "a.png")
    (folder / "b.png").write_text("corrupt")
    save(gradient(64, 64).convert("CMYK"), folder / "c.jpg", "JPEG")
    result = cli("img2img", "a cat", "photos", "-m", tiny_sd, "--steps", "2", "--seed", "1", "--json")
    assert result.exit_code == 2
    *records, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert summary["type"] == "summary" and summary["images"] == 2 and summary["failures"] == 1
    assert [Path(r["input"]).name for r in records] == ["a.png", "c.jpg"]
    assert all(Path(r["path"]).exists() for r in records)
    assert sorted(p.name.split("-", 2)[2] for p in Path("outputs").iterdir()) == ["a-1.png", "c-1.png"]
    assert "error: photos/b.png: not a PNG, JPEG or WebP image" in result.stderr
    assert "1 input(s) could not be used" in result.stderr and "Traceback" not in result.stderr


def test_metadata_has_strength_and_init_image_without_its_path(cli, tiny_sd: Path, tmp_path: Path) -> None:
    source = save(gradient(), tmp_path / "photo.png")
    result = cli(
        "img2img", "a cat", source, "-m", tiny_sd, "--steps", "4", "--strength", "0.5", "-o", "x.png"
    )
    assert result.exit_code == 0, result.stderr
    with Image.open("x.png") as im:
        text = im.text
    record = json.loads(text["sdcli"])
    assert record["strength"] == 0.5 and record["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert record["init_image"] == inputs.read_image(source).record
    assert (record["width"], record["height"]) == (64, 48)
    assert "Denoising strength: 0.5" in text["parameters"]
    assert f"Init image hash: {record['init_image']['hash']}" in text["parameters"]
    assert str(tmp_path).encode() not in Path("x.png").read_bytes()


def test_width_height_and_resize(cli, tiny_sd: Path, tmp_path: Path) -> None:
    save(gradient(70, 50), tmp_path / "a.png")
    result = cli(
        "img2img",
        "a cat",
        "a.png",
        "-m",
        tiny_sd,
        "--steps",
        "2",
        "-W",
        "32",
        "-H",
        "56",
        "--resize",
        "fit",
        "-o",
        "fit.png",
    )
    assert result.exit_code == 0, result.stderr
    with Image.open("fit.png") as im:
        assert im.size == (32, 56) and json.loads(im.text["sdcli"])["resize"] == "fit"


def test_several_inputs_with_a_given_name_and_count(cli, tiny_sd: Path, tmp_path: Path) -> None:
    save(gradient(), tmp_path / "a.png")
    save(gradient(), tmp_path / "b.png")
    args = ("-m", tiny_sd, "--steps", "2", "--seed", "5", "-c", "2", "-o", "out/v.png")
    result = cli("img2img", "a cat", "a.png", "b.png", *args)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in written(result)) == ["v-a-0.png", "v-a-1.png", "v-b-0.png", "v-b-1.png"]


def test_sdxl_img2img(cli, tiny_sdxl: Path, tmp_path: Path) -> None:
    save(gradient(), tmp_path / "a.png")
    result = cli("img2img", "a cat", "a.png", "-m", tiny_sdxl, "--steps", "2", "-o", "x.png")
    assert result.exit_code == 0, result.stderr
    with Image.open("x.png") as im:
        assert im.size == (64, 48)
        assert json.loads(im.text["sdcli"])["pipeline"] == "StableDiffusionXLImg2ImgPipeline"


def test_img2img_refuses_an_inpainting_checkpoint(cli, tiny_inpaint: Path, tmp_path: Path) -> None:
    save(gradient(), tmp_path / "a.png")
    result = cli("img2img", "a cat", "a.png", "-m", tiny_inpaint, "--steps", "2")
    assert result.exit_code == 2 and "is an inpainting checkpoint" in result.stderr
    assert "sdcli inpaint" in result.stderr


# -- inpaint end to end --------------------------------------------------------------------------------------


def half_mask(width: int, height: int) -> Image.Image:
    """White (repaint) on the right half, black (keep) on the left."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 2, 0, width, height))
    return mask


@pytest.mark.parametrize(
    ("model", "pipeline"),
    [("tiny_inpaint", "StableDiffusionInpaintPipeline"), ("tiny_sd", "StableDiffusionInpaintPipeline")],
)
def test_inpaint_keeps_the_black_area(cli, request, tmp_path: Path, model: str, pipeline: str) -> None:
    source = save(gradient(64, 48), tmp_path / "photo.png")
    mask = save(half_mask(16, 12), tmp_path / "mask.png")  # another size: stretched onto the image
    result = cli(
        "inpaint",
        source,
        mask,
        "a dog",
        "-m",
        request.getfixturevalue(model),
        "--steps",
        "4",
        "--strength",
        "1",
        "--seed",
        "2",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    line = json.loads(result.stdout.splitlines()[0])
    out, original = pixels(line["path"]), pixels(source)
    assert out.shape == (48, 64, 3)
    kept = np.abs(out[:, :24] - original[:, :24]).mean()  # left of the 4-pixel blur
    repainted = np.abs(out[:, 40:] - original[:, 40:]).mean()
    assert kept < 1 < 10 < repainted
    record = line["parameters"]
    assert record["pipeline"] == pipeline and record["mask_blur"] == 4 and record["strength"] == 1
    assert record["init_image"]["name"] == "photo.png" and record["mask"]["name"] == "mask.png"
    assert len(record["mask"]["hash"]) == 10
    assert Path(line["path"]).name.endswith("-photo-2.png")


def test_sdxl_inpaint_through_from_pipe(cli, tiny_sdxl: Path, tmp_path: Path) -> None:
    save(gradient(64, 48), tmp_path / "photo.png")
    save(half_mask(64, 48), tmp_path / "mask.png")
    result = cli("inpaint", "photo.png", "mask.png", "a dog", "-m", tiny_sdxl, "--steps", "2", "-o", "x.png")
    assert result.exit_code == 0, result.stderr
    with Image.open("x.png") as im:
        assert json.loads(im.text["sdcli"])["pipeline"] == "StableDiffusionXLInpaintPipeline"
