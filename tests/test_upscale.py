"""`sdcli upscale`: Lanczos against Pillow's own resize, a tiny random x4 upscale pipeline against plain
diffusers, the metadata an upscaled image carries, and the refusals that come before any work."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.images import metadata, upscale

RECORD = {
    "schema": 1,
    "prompt": "a red fox",
    "negative": "blurry",
    "model": "tiny-sd",
    "steps": 2,
    "guidance": 7.0,
    "seed": 42,
    "width": 32,
    "height": 24,
    "sampler": "Euler",
}


def noise(width: int = 32, height: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixels(path: Path | str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


@pytest.fixture(scope="session")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sdcli image: its record and parameters text, as generate writes them."""
    path = tmp_path_factory.mktemp("upscale-src") / "fox.png"
    noise().save(path, pnginfo=metadata.png_info(RECORD))
    return path


# -- Lanczos -------------------------------------------------------------------------------------------------


def test_lanczos_is_pillows_resize_and_carries_the_metadata(cli, made: Path, tmp_path: Path) -> None:
    result = cli("upscale", made, "-o", tmp_path / "big.png")
    assert result.exit_code == 0, result.stderr
    out = Path(result.stdout.strip())
    expected = np.asarray(noise().resize((64, 48), Image.Resampling.LANCZOS)).astype(int)
    assert np.array_equal(pixels(out), expected)
    source, meta = metadata.read_metadata(made), metadata.read_metadata(out)
    assert meta.raw["parameters"] == source.raw["parameters"]  # what made it, unchanged
    assert meta.raw["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    assert meta.raw["extras"] == meta.raw["postprocessing"]
    assert meta.record is not None
    upscaled = meta.record.pop("upscale")
    assert meta.record == RECORD
    assert upscaled == {
        "upscaler": "lanczos",
        "scale": 2.0,
        "width": 64,
        "height": 48,
        "input": {"width": 32, "height": 24},
    }
    assert meta.parameters["Seed"] == 42 and meta.prompt == "a red fox"


def test_a_lanczos_run_imports_no_torch(made: Path, tmp_path: Path) -> None:
    from tests.test_process import run_probe

    code, heavy, stderr = run_probe("upscale", str(made), "-o", str(tmp_path / "fast.png"))
    assert (code, heavy) == (0, "none"), stderr
    assert (tmp_path / "fast.png").is_file()


def test_width_alone_keeps_the_aspect_ratio_and_writes_upscale_to(cli, made: Path, tmp_path: Path) -> None:
    result = cli("upscale", made, "--width", "50", "-o", tmp_path / "w.png", "--json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["type"] for line in lines] == ["image", "summary"]
    assert (lines[0]["width"], lines[0]["height"]) == (50, 38)
    expected = np.asarray(noise().resize((50, 38), Image.Resampling.LANCZOS)).astype(int)
    assert np.array_equal(pixels(lines[0]["path"]), expected)
    meta = metadata.read_metadata(lines[0]["path"])
    assert meta.raw["postprocessing"] == "Postprocess upscale to: 50x38, Postprocess upscaler: Lanczos"


def test_info_shows_the_upscale_and_from_warns_it_is_not_redone(cli, made: Path, tmp_path: Path) -> None:
    from sdcli.images import remake

    out = tmp_path / "big.png"
    assert cli("upscale", made, "-o", out).exit_code == 0
    shown = cli("info", out, "--json")
    assert shown.exit_code == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["record"]["upscale"]["scale"] == 2.0 and "postprocessing" in data["raw"]
    record, warnings = remake.read_record_and_warnings(out)
    assert record["seed"] == 42 and record["width"] == 32  # the original generation, not the upscale
    assert len(warnings) == 1 and "does not redo" not in warnings[0] and "before the upscale" in warnings[0]


def test_a1111_jpeg_keeps_its_parameters_and_gets_no_sdcli_record(cli, tmp_path: Path) -> None:
    text = metadata.a1111_parameters(RECORD)
    exif = Image.Exif()
    exif[0x8769] = {0x9286: b"UNICODE\0" + text.encode("utf-16-be")}
    source = tmp_path / "photo.jpg"
    noise(16, 16).save(source, format="JPEG", exif=exif.tobytes())
    result = cli("upscale", source, "--scale", "1.5")
    assert result.exit_code == 0, result.stderr
    out = Path(result.stdout.strip())
    assert out.suffix == ".png" and out.name.endswith("-photo-upscaled.png")
    meta = metadata.read_metadata(out)
    assert meta.format == "PNG" and meta.source == "a1111" and meta.record is None
    assert meta.raw["parameters"] == text and meta.parameters["Seed"] == 42
    assert meta.raw["postprocessing"].startswith("Postprocess upscale by: 1.5,")
    with Image.open(out) as im:
        assert im.size == (24, 24)


def test_never_overwrites(cli, made: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken.png"
    target.write_bytes(b"mine")
    result = cli("upscale", made, "-o", target)
    assert result.exit_code == 6 and target.read_bytes() == b"mine"
    assert cli("upscale", made, "-o", target, "--overwrite").exit_code == 0
    assert target.read_bytes() != b"mine"
    # Default names: within one second a second call gets _1 (its {time} may also have ticked on).
    first, second = cli("upscale", made), cli("upscale", made)
    assert first.stdout != second.stdout
    assert all(Path(result.stdout.strip()).is_file() for result in (first, second))


def test_several_inputs_each_get_their_own_output(cli, made: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.png"
    noise(seed=1).save(other)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = cli("upscale", made, other, bad, "-o", tmp_path / "out" / "big.png")
    assert result.exit_code == 2  # the bad input, reported, after the others were written
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["big-fox.png", "big-other.png"]
    assert result.stderr.count("error:") == 2 and "bad.png: not a PNG" in result.stderr


# -- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("no/such.png",), "no/such.png: no such file"),
        (("IMG", "--scale", "0"), "--scale 0 is not in"),
        (("IMG", "--scale", "2", "--width", "64"), "--scale and --width/--height"),
        (("IMG", "--upscaler", "bicubic"), "'bicubic' is not an upscaler"),
        (("IMG", "--upscaler", "EMPTY"), "no readable model_index.json"),
        (("IMG", "--upscaler", "SD"), "is a StableDiffusionPipeline, not an upscaler"),
        (("IMG", "--upscaler", "4x-UltraSharp.pth"), "need spandrel, which is not installed"),
        (("IMG", "--upscaler", "missing.safetensors"), "missing.safetensors: no such file"),
    ],
)
def test_bad_input_is_one_error_and_no_file(
    cli, made: Path, tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    (tmp_path / "EMPTY").mkdir()
    # A text-to-image pipeline is refused on its model_index.json alone, before any weights are read.
    (tmp_path / "tiny-sd").mkdir()
    (tmp_path / "tiny-sd" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (tmp_path / "4x-UltraSharp.pth").write_bytes(b"\x80\x02}q\x00.")
    swap = {"IMG": str(made), "SD": str(tmp_path / "tiny-sd")}
    result = cli("upscale", *(swap.get(a, a) for a in args))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("error:") == 1 and words in result.stderr
    if "spandrel" in words:
        assert "pip install 'sdcli[upscale]'" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_weights_that_are_not_just_tensors_are_refused(tmp_path: Path) -> None:
    from sdcli.errors import UsageError
    from sdcli.generation import upscaling

    class Payload:
        def __reduce__(self):  # unpickling this would run print: the loader must never get that far
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"weight": Payload()}, protocol=2))
    with pytest.raises(UsageError, match="holds more than tensors"):
        upscaling.read_weights(path)
    not_weights = tmp_path / "text.safetensors"
    not_weights.write_text("hello")
    with pytest.raises(UsageError, match="not a readable weights file"):
        upscaling.read_weights(not_weights)


def test_sizes() -> None:
    assert upscale.target_size((30, 20), None, None, None, 2.0) == (60, 40)
    assert upscale.target_size((30, 20), 1.5, None, None, 2.0) == (45, 30)
    assert upscale.target_size((30, 20), None, None, 50, 2.0) == (75, 50)
    assert upscale.target_size((30, 20), None, 64, 64, 2.0) == (64, 64)


# -- diffusers' x4 upscaler ----------------------------------------------------------------------------------


def plain_diffusers(folder: Path, image: Image.Image, prompt: str, seed: int) -> np.ndarray:
    import torch
    from diffusers import StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt=prompt,
        image=image,
        num_inference_steps=2,
        noise_level=20,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]
    return np.asarray(out).astype(int)


def test_x4_pipeline_matches_plain_diffusers(cli, tiny_x4: Path, tmp_path: Path) -> None:
    source = tmp_path / "small.png"
    small = noise(16, 16, seed=3)
    small.save(source, pnginfo=metadata.png_info(RECORD))
    result = cli("upscale", source, "--upscaler", tiny_x4, "--steps", "2", "--seed", "7", "--json")
    assert result.exit_code == 0, result.stderr
    line = json.loads(result.stdout.splitlines()[0])
    assert (line["width"], line["height"]) == (64, 64)
    # No --prompt: the image's own prompt guides the text-conditioned upscaler.
    assert np.array_equal(pixels(line["path"]), plain_diffusers(tiny_x4, small, "a red fox", 7))
    meta = metadata.read_metadata(line["path"])
    assert meta.raw["postprocessing"] == "Postprocess upscale by: 4, Postprocess upscaler: tiny-x4"
    assert meta.record is not None and meta.record["upscale"] == {
        "upscaler": "tiny-x4",
        "kind": "pipeline",
        "pipeline": "StableDiffusionUpscalePipeline",
        "model_scale": 4,
        "scale": 4.0,
        "width": 64,
        "height": 64,
        "input": {"width": 16, "height": 16},
        "prompt": "a red fox",
        "negative": "",
        "steps": 2,
        "guidance": None,
        "seed": 7,
        "noise_level": 20,
        "passes": 1,
    }


def test_x4_pipeline_through_the_module(tiny_x4: Path, tmp_path: Path) -> None:
    from sdcli.generation import upscale_runs
    from sdcli.generation.upscaling import ModelOptions

    source = tmp_path / "plain.png"
    small = noise(16, 16, seed=4)
    small.save(source)
    request = upscale_runs.UpscaleRequest(
        [str(source)],
        str(tiny_x4),
        width=40,  # the model's 64x64, then Lanczos down to the size asked for
        output=str(tmp_path / "x.png"),
        model=ModelOptions(prompt="a cat", steps=2, seed=11),
    )
    (result,) = list(upscale_runs.run(upscale_runs.plan(request)))
    assert isinstance(result, upscale_runs.Upscaled) and result.size == (40, 40)
    full = Image.fromarray(plain_diffusers(tiny_x4, small, "a cat", 11).astype(np.uint8))
    expected = np.asarray(full.resize((40, 40), Image.Resampling.LANCZOS)).astype(int)
    assert np.array_equal(pixels(result.path), expected)
    assert metadata.read_metadata(result.path).raw["postprocessing"] == (
        "Postprocess upscale to: 40x40, Postprocess upscaler: tiny-x4"
    )


# -- ESRGAN-family files through spandrel --------------------------------------------------------------------
# spandrel needs a torchvision built for the installed torch: PyPI's (CUDA) torchvision fails against the CPU
# torch build CI installs, so these run where `pip install 'sdcli[upscale]'` works (checked once here on
# torch 2.14.1+cu130 with torchvision 0.29.1 and spandrel 0.4.2, CPU only).


def _spandrel() -> object:
    try:
        import spandrel
    except Exception as exc:  # ImportError, or torchvision's RuntimeError against a foreign torch build
        pytest.skip(f"spandrel does not import here: {type(exc).__name__}")
    return spandrel


@pytest.fixture(scope="session")
def tiny_esrgan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2x RRDBNet (ESRGAN's architecture) with 8 filters and one block, as a .safetensors file."""
    _spandrel()
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(num_filters=8, num_blocks=1, scale=2)
    path = tmp_path_factory.mktemp("esrgan") / "4x-Tiny.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_an_esrgan_file_upscales_as_a_plain_spandrel_script(
    cli, made: Path, tiny_esrgan: Path, tmp_path
) -> None:
    spandrel = _spandrel()
    import torch

    out = tmp_path / "big.png"
    result = cli("upscale", made, "--upscaler", tiny_esrgan, "-o", out, "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    model = spandrel.ModelLoader().load_from_file(str(tiny_esrgan)).eval()  # type: ignore[attr-defined]
    source = np.asarray(Image.open(made).convert("RGB"), dtype=np.float32) / 255.0
    with torch.inference_mode():
        plain = model(torch.from_numpy(source).permute(2, 0, 1).unsqueeze(0))
    expected = plain.squeeze(0).permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
    assert np.array_equal(pixels(out), expected)  # the model's own 2x: no Lanczos step after it
    texts = metadata.read_metadata(out).raw
    assert texts["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: 4x-Tiny"


def test_the_hires_fix_takes_an_esrgan_file(cli, tiny_sd: Path, tiny_esrgan: Path, tmp_path: Path) -> None:
    _spandrel()
    out = tmp_path / "hires.png"
    run = ("--steps", "2", "-W", "32", "-H", "32", "--seed", "3", "--device", "cpu")
    result = cli(
        "generate",
        "a cat",
        "-m",
        tiny_sd,
        *run,
        "--hires-scale",
        "2",
        "--hires-upscaler",
        tiny_esrgan,
        "-o",
        out,
    )
    assert result.exit_code == 0, result.stderr
    assert Image.open(out).size == (64, 64)
    assert "Hires upscaler: 4x-Tiny" in metadata.read_metadata(out).raw["parameters"]
