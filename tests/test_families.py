"""FLUX.1 and SD3 (and the generic fallback) through the real CLI and the modules: the same pixels as a
plain diffusers script at the same seed, family defaults and metadata, `--from` remakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdcli.core.requests import GenerationRequest, ModelRequest
from sdcli.generation import family_runs
from sdcli.images import metadata
from sdcli.model import pipelines
from sdcli.model.families import FLUX, GENERIC, SD, of_class
from sdcli.model.sources import read_model_index
from tests.family_fixtures import plain_diffusers
from tests.png_helpers import params_and_record, pixels

SIZE = ("-W", "64", "-H", "64")


@pytest.fixture(params=["flux", "sd3"])
def family_model(request: pytest.FixtureRequest) -> tuple[str, Path]:
    return request.param, request.getfixturevalue(f"tiny_{request.param}")


def test_generate_matches_a_plain_diffusers_script(cli, family_model: tuple[str, Path]) -> None:
    name, folder = family_model
    result = cli("generate", "a cat", "-m", folder, "--steps", "2", "--seed", "5", *SIZE, "-o", "x.png")
    assert result.exit_code == 0, result.stderr
    expected = plain_diffusers(folder, "a cat", 5, num_inference_steps=2, width=64, height=64)
    got = pixels("x.png").astype(int)
    assert got.shape == (64, 64, 3) and got.std() > 1  # not a flat image
    assert np.array_equal(got, expected)
    _, record = params_and_record("x.png")
    assert record["family"] == name and record["steps"] == 2
    assert record["pipeline"] == {"flux": "FluxPipeline", "sd3": "StableDiffusion3Pipeline"}[name]


def test_sd3_negative_prompt_is_the_pipelines(cli, tiny_sd3: Path) -> None:
    args = ("generate", "a cat", "-m", tiny_sd3, "--steps", "2", "--seed", "3", *SIZE, "-n", "blurry")
    result = cli(*args, "-o", "n.png")
    assert result.exit_code == 0, result.stderr
    expected = plain_diffusers(
        tiny_sd3, "a cat", 3, negative_prompt="blurry", num_inference_steps=2, width=64, height=64
    )
    assert np.array_equal(pixels("n.png").astype(int), expected)
    text, record = params_and_record("n.png")
    assert "Negative prompt: blurry" in text and record["guidance"] == 7.0


def test_flux_records_distilled_guidance_as_forge_does(cli, tiny_flux: Path) -> None:
    args = ("generate", "a cat", "-m", tiny_flux, "--steps", "2", "--seed", "1", *SIZE, "-o", "f.png")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    text, record = params_and_record("f.png")
    # --guidance left alone: FluxPipeline's own 3.5, written as Forge writes it.
    assert record["guidance"] == 3.5 and record["guidance_kind"] == "distilled"
    assert "CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 1" in text
    # An A1111/Forge reader gets the distilled value back as the guidance to use.
    assert metadata.record_from_a1111(metadata.parse_a1111(text))["guidance"] == 3.5


def test_flux_remake_from_its_png_gives_the_same_pixels(cli, tiny_flux: Path) -> None:
    first = cli("generate", "a red boat", "-m", tiny_flux, "--steps", "2", "-g", "2.5", *SIZE, "-o", "a.png")
    assert first.exit_code == 0, first.stderr
    again = cli("generate", "--from", "a.png", "-m", tiny_flux, "-o", "b.png")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(pixels("a.png"), pixels("b.png"))
    assert params_and_record("b.png")[1]["guidance"] == 2.5


def test_schnell_defaults_to_4_steps_and_no_guidance(cli, tiny_flux_schnell: Path) -> None:
    result = cli("generate", "a cat", "-m", tiny_flux_schnell, "--seed", "2", *SIZE, "-o", "s.png")
    assert result.exit_code == 0, result.stderr
    text, record = params_and_record("s.png")
    assert record["steps"] == 4 and record["guidance"] == 0.0 and record["family"] == "flux-schnell"
    assert "Steps: 4," in text and "Distilled CFG Scale" not in text
    expected = plain_diffusers(
        tiny_flux_schnell, "a cat", 2, num_inference_steps=4, guidance_scale=0.0, width=64, height=64
    )
    assert np.array_equal(pixels("s.png").astype(int), expected)


def test_flux_refuses_a_negative_prompt_before_denoising(cli, tiny_flux: Path) -> None:
    result = cli("generate", "a cat", "-m", tiny_flux, "--steps", "1", *SIZE, "-n", "blurry", "-o", "n.png")
    assert result.exit_code == 2
    assert "FLUX.1 takes no negative prompt" in result.stderr and "hint:" in result.stderr
    assert not Path("n.png").exists()


def test_weighting_syntax_the_family_ignores_is_warned_once(cli, tiny_sd3: Path) -> None:
    args = ("generate", "a (cat:1.3), [hat]", "-m", tiny_sd3, "--steps", "1", *SIZE, "-c", "2")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("A1111 weighting") == 1
    quiet = cli(*args, "--weighting", "none")
    assert quiet.exit_code == 0 and "A1111 weighting" not in quiet.stderr
    skip = cli("generate", "a cat", "-m", tiny_sd3, "--steps", "1", *SIZE, "--clip-skip", "2")
    assert skip.exit_code == 0 and skip.stderr.count("--clip-skip is not applied") == 1


def test_family_defaults_only_replace_what_was_left_at_default(tiny_flux: Path, tiny_sd3: Path) -> None:
    flux = pipelines.load_model(ModelRequest(str(tiny_flux))).pipe
    left = GenerationRequest("a", defaulted=frozenset({"steps", "guidance"}))
    got = family_runs.with_defaults(FLUX, flux, left)
    assert (got.steps, got.guidance) == (28, 3.5)  # FluxPipeline's own defaults
    given = GenerationRequest("a", steps=30, guidance=7.0)
    assert family_runs.with_defaults(FLUX, flux, given) == given
    # SD/SDXL keep sdcli's defaults: their path does not change.
    assert family_runs.with_defaults(SD, flux, left) == left


def test_pipeline_decode_and_sdcli_decode_agree_for_flux(tiny_flux: Path) -> None:
    """The generic path (the pipeline decodes, sdcli checks) gives what sdcli's own decode gives."""
    import torch

    pipe = pipelines.load_model(ModelRequest(str(tiny_flux))).pipe
    args = dict(prompt="a cat", num_inference_steps=1, width=32, height=32)
    latents = pipe(**args, output_type="latent", generator=torch.Generator().manual_seed(0)).images
    kind = family_runs.output_type(GENERIC)
    images = pipe(**args, output_type=kind, generator=torch.Generator().manual_seed(0)).images
    ours = family_runs.decode(FLUX, pipe, latents, 32, 32, upcast=False)
    theirs = family_runs.decode(GENERIC, pipe, images, 32, 32, upcast=False)
    assert np.abs(ours.pixels[0] - theirs.pixels[0]).max() < 1e-5
    with pytest.raises(family_runs.CheckFailed, match="NaN"):
        family_runs.checked_images(images * float("nan"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("StableDiffusionPipeline", "sd"),
        ("StableDiffusionXLImg2ImgPipeline", "sdxl"),
        ("StableDiffusion3Pipeline", "sd3"),
        ("FluxPipeline", "flux"),
        ("PixArtSigmaPipeline", "generic"),
    ],
)
def test_family_from_the_class_model_index_names(name: str, expected: str) -> None:
    assert of_class(name).name == expected


def _input_png(path: Path) -> Path:
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    return path


def test_img2img_matches_the_diffusers_img2img_pipeline(cli, family_model, tmp_path: Path) -> None:
    import diffusers
    import torch
    from PIL import Image

    name, folder = family_model
    photo = _input_png(tmp_path / "photo.png")
    result = cli("img2img", "a cat", photo, "-m", folder, "--steps", "4", "--seed", "9", "-o", "i.png")
    assert result.exit_code == 0, result.stderr
    cls = {"flux": diffusers.FluxImg2ImgPipeline, "sd3": diffusers.StableDiffusion3Img2ImgPipeline}[name]
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    size = {"width": 64, "height": 64} if name == "flux" else {}
    guidance = {"flux": 3.5, "sd3": 7.0}[name]  # the family's defaults, recorded
    with Image.open(photo) as image:
        expected = pipe(
            "a cat",
            image=image.convert("RGB"),
            strength=0.75,
            num_inference_steps=4,
            guidance_scale=guidance,
            generator=torch.Generator("cpu").manual_seed(9),
            **size,
        ).images[0]
    assert np.array_equal(pixels("i.png"), np.asarray(expected))
    _, record = params_and_record("i.png")
    assert (
        record["pipeline"] == cls.__name__ and record["strength"] == 0.75 and record["guidance"] == guidance
    )


def test_inpaint_repaints_only_the_white_part(cli, family_model, tmp_path: Path) -> None:
    from PIL import Image

    name, folder = family_model
    photo = _input_png(tmp_path / "photo.png")
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    args = ("inpaint", photo, tmp_path / "mask.png", "a cat", "-m", folder, "--steps", "4", "--seed", "1")
    result = cli(*args, "--mask-blur", "0", "-o", "p.png")
    assert result.exit_code == 0, result.stderr
    out, original = pixels("p.png").astype(int), pixels(photo).astype(int)
    assert np.array_equal(out[:16], original[:16])  # black in the mask: the input's pixels exactly
    assert np.abs(out[20:44, 20:44] - original[20:44, 20:44]).mean() > 5  # white: repainted
    assert params_and_record("p.png")[1]["pipeline"].endswith("InpaintPipeline")


def test_info_check_runs_a_family_model(cli, tiny_sd3: Path) -> None:
    import json

    result = cli("info", "--check", "-m", tiny_sd3, "--json")
    assert result.exit_code == 0, result.stderr
    check = json.loads(result.stdout)["check"]
    assert check["ok"] and check["pipeline"] == "StableDiffusion3Pipeline"
    assert [s["name"] for s in check["stages"]] == ["import", "load", "denoise+decode", "verify"]


# What black-forest-labs/FLUX.1-dev and stabilityai/stable-diffusion-3.5-large hold (names, not sizes): the
# top-level single files and ComfyUI's text_encoders/ folder duplicate the pipeline's weights.
FLUX_REPO = [
    "ae.safetensors",
    "flux1-dev.safetensors",
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder_2/config.json",
    "text_encoder_2/model-00001-of-00002.safetensors",
    "text_encoder_2/model-00002-of-00002.safetensors",
    "text_encoder_2/model.safetensors.index.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer_2/spiece.model",
    "tokenizer_2/tokenizer.json",
    "tokenizer_2/tokenizer_config.json",
    "transformer/config.json",
    "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
    "transformer/diffusion_pytorch_model-00002-of-00003.safetensors",
    "transformer/diffusion_pytorch_model-00003-of-00003.safetensors",
    "transformer/diffusion_pytorch_model.safetensors.index.json",
    "transformer/diffusion_pytorch_model.bf16-00001-of-00002.safetensors",
    "transformer/diffusion_pytorch_model.bf16-00002-of-00002.safetensors",
    "transformer/diffusion_pytorch_model.safetensors.index.bf16.json",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
]
FLUX_INDEX = {
    "_class_name": "FluxPipeline",
    **{
        name: ["diffusers", "x"]
        for name in (
            "scheduler",
            "text_encoder",
            "text_encoder_2",
            "tokenizer",
            "tokenizer_2",
            "transformer",
            "vae",
        )
    },
}


def test_download_takes_each_flux_weight_once() -> None:
    from sdcli.hub.selection import select_files

    plain = select_files(FLUX_REPO, FLUX_INDEX)
    assert "flux1-dev.safetensors" not in plain and "ae.safetensors" not in plain
    assert [f for f in plain if f.startswith("transformer/") and ".bf16" in f] == []
    assert sum(f.startswith("transformer/diffusion_pytorch_model-") for f in plain) == 3
    assert {"text_encoder_2/model.safetensors.index.json", "tokenizer_2/spiece.model"} <= set(plain)
    bf16 = [f for f in select_files(FLUX_REPO, FLUX_INDEX, variant="bf16") if f.startswith("transformer/")]
    assert bf16 == [
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.bf16-00001-of-00002.safetensors",
        "transformer/diffusion_pytorch_model.bf16-00002-of-00002.safetensors",
        "transformer/diffusion_pytorch_model.safetensors.index.bf16.json",
    ]
    # A variant a component lacks falls back to its plain weights, as diffusers loads them.
    assert "text_encoder_2/model-00001-of-00002.safetensors" in select_files(
        FLUX_REPO, FLUX_INDEX, variant="bf16"
    )


def test_download_skips_sd35s_comfyui_copies(tiny_sd3: Path) -> None:
    from sdcli.hub.selection import select_files

    files = [
        "model_index.json",
        "sd3.5_large.safetensors",
        "text_encoders/clip_g.safetensors",
        "text_encoders/t5xxl_fp16.safetensors",
        "text_encoder_3/config.json",
        "text_encoder_3/model-00001-of-00002.safetensors",
        "text_encoder_3/model-00002-of-00002.safetensors",
        "text_encoder_3/model.safetensors.index.json",
        "tokenizer_3/spiece.model",
    ]
    index = read_model_index(tiny_sd3)  # the real SD3 layout: three encoders and tokenizers
    assert select_files(files, index) == [
        "model_index.json",
        "text_encoder_3/config.json",
        "text_encoder_3/model-00001-of-00002.safetensors",
        "text_encoder_3/model-00002-of-00002.safetensors",
        "text_encoder_3/model.safetensors.index.json",
        "tokenizer_3/spiece.model",
    ]


@pytest.mark.parametrize(("scheme", "package"), [("bnb-4bit", "bitsandbytes"), ("torchao-int8", "torchao")])
def test_quantize_without_its_package_is_exit_2_naming_the_pip_line(cli, scheme: str, package: str) -> None:
    from sdcli.model import quantization

    if quantization.installed(package):
        pytest.skip(f"{package} is installed here")
    # Refused while validating, before the (nonexistent) model is looked for.
    result = cli("generate", "a cat", "-m", "./no-such-model", "--quantize", scheme)
    assert result.exit_code == 2, result.stderr
    assert f"--quantize {scheme} needs the {package} package" in result.stderr
    assert f"pip install 'sdcli[{package}]'" in result.stderr


def test_unknown_quantize_scheme_is_exit_2(cli) -> None:
    result = cli("generate", "a cat", "-m", "./no-such-model", "--quantize", "int3")
    assert result.exit_code == 2 and "is not one of none, bnb-4bit" in result.stderr


def test_quantize_takes_the_denoiser_and_t5_only(tiny_flux: Path, tiny_sd3: Path, tiny_sd: Path) -> None:
    from sdcli.model import quantization

    assert quantization.components(read_model_index(tiny_flux)) == ["transformer", "text_encoder_2"]
    assert quantization.components(read_model_index(tiny_sd3)) == ["transformer", "text_encoder_3"]
    # SDXL's text_encoder_2 is a CLIP: small, left alone; SD's denoiser is its UNet.
    assert quantization.components(read_model_index(tiny_sd)) == ["unet"]


def _transformer_file(folder: Path, to: Path) -> Path:
    """What a FLUX.1 fine-tune ships: the transformer's weights alone, in one file."""
    import shutil

    return Path(shutil.copyfile(folder / "transformer" / "diffusion_pytorch_model.safetensors", to))


def test_a_transformer_file_with_config_makes_the_folders_pixels(cli, family_model, tmp_path: Path) -> None:
    name, folder = family_model
    weights = _transformer_file(folder, tmp_path / f"my-{name}-finetune.safetensors")
    common = ("--steps", "2", "--seed", "4", *SIZE)
    single = cli("generate", "a cat", "-m", weights, "--config", folder, *common, "-o", "single.png")
    assert single.exit_code == 0, single.stderr
    whole = cli("generate", "a cat", "-m", folder, *common, "-o", "folder.png")
    assert whole.exit_code == 0, whole.stderr
    assert np.array_equal(pixels("single.png"), pixels("folder.png"))
    text, record = params_and_record("single.png")
    assert record["model"] == f"my-{name}-finetune" and record["config"] == folder.name
    assert len(record["model_hash"]) == 10 and f"Model hash: {record['model_hash']}" in text


def test_a_transformer_file_needs_the_rest_of_the_pipeline(cli, tiny_flux: Path, tmp_path: Path) -> None:
    from tests.model_fixtures import config_only_copy

    weights = _transformer_file(tiny_flux, tmp_path / "ft.safetensors")
    configs = config_only_copy(tiny_flux, tmp_path / "flux-configs")
    result = cli("generate", "a cat", "-m", weights, "--config", configs, "--steps", "1", *SIZE)
    assert result.exit_code == 3
    assert "has no weights for text_encoder, text_encoder_2, vae" in result.stderr
    assert "--exclude 'transformer/*'" in result.stderr


def test_a_transformer_file_with_another_familys_config_is_exit_2(
    cli, tiny_sd3: Path, tiny_flux: Path, tmp_path: Path
) -> None:
    weights = _transformer_file(tiny_sd3, tmp_path / "sd3-ft.safetensors")
    result = cli("generate", "a cat", "-m", weights, "--config", tiny_flux, "--steps", "1", *SIZE)
    assert result.exit_code == 2
    assert "is a SD3 transformer but --config tiny-flux describes a FluxPipeline model" in result.stderr


def test_a_gguf_file_without_the_gguf_package_is_exit_2(
    cli, tiny_flux: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "gguf", None)  # as if not installed: find_spec None, import fails
    weights = tmp_path / "flux1-dev-Q4_K_S.gguf"
    weights.write_bytes(b"GGUF" + bytes(60))
    result = cli("generate", "a cat", "-m", weights, "--config", tiny_flux, "--steps", "1")
    assert result.exit_code == 2
    assert "needs the gguf package" in result.stderr and "pip install 'sdcli[gguf]'" in result.stderr


def _gguf_file(folder: Path, to: Path, *, f16: bool = False, q8_0: tuple[str, ...] = ()) -> Path:
    """The tiny FLUX.1 or SD3 transformer's weights as a GGUF file: F32 (or F16), `q8_0`'s tensors Q8_0.

    The names are diffusers' own, which from_single_file loads as they are. Real FLUX.1 GGUF files use the
    original BFL names (`double_blocks.0.img_attn.qkv.weight`); diffusers converts those, but its
    conversion splits the single blocks' fused weights for FLUX.1's own width (3072), so a tiny file in
    that layout cannot load."""
    gguf = pytest.importorskip("gguf")
    from safetensors.torch import load_file

    writer = gguf.GGUFWriter(str(to), "flux")
    for name, tensor in load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors").items():
        array = tensor.float().numpy()
        if name in q8_0:
            kind = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(array, kind), raw_dtype=kind)
        else:
            writer.add_tensor(name, array.astype(np.float16) if f16 else array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return to


def _plain_diffusers_gguf(weights: Path, folder: Path, seed: int, **kwargs: object) -> np.ndarray:
    """What a user's own script makes of the GGUF file: diffusers' documented GGUF loading."""
    import diffusers
    import torch
    from diffusers import DiffusionPipeline, GGUFQuantizationConfig

    transformer_cls = getattr(diffusers, read_model_index(folder)["transformer"][1])  # FLUX's or SD3's
    transformer = transformer_cls.from_single_file(
        str(weights),
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        config=str(folder),
        subfolder="transformer",
    )
    pipe = DiffusionPipeline.from_pretrained(folder, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a cat", generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0]
    return np.asarray(image.convert("RGB")).astype(int)


@pytest.mark.parametrize("cut", [64, 24], ids=["header-of-zeros", "cut-after-the-counts"])
def test_a_damaged_gguf_file_is_exit_2(cli, tiny_flux: Path, tmp_path: Path, cut: int) -> None:
    whole = _gguf_file(tiny_flux, tmp_path / "whole.gguf").read_bytes()
    weights = tmp_path / "flux1-dev-Q4_K_S.gguf"
    weights.write_bytes(b"GGUF" + bytes(60) if cut == 64 else whole[:cut])
    result = cli("generate", "a cat", "-m", weights, "--config", tiny_flux, "--steps", "1")
    assert result.exit_code == 2, result.stderr
    assert "flux1-dev-Q4_K_S.gguf is not a readable GGUF file" in result.stderr


def test_a_gguf_file_of_something_else_is_exit_2(cli, tiny_flux: Path, tmp_path: Path) -> None:
    """A language model's GGUF (llama.cpp's tensor names) is no FLUX.1/SD3 transformer."""
    gguf = pytest.importorskip("gguf")
    weights = tmp_path / "llama-Q8_0.gguf"
    writer = gguf.GGUFWriter(str(weights), "llama")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = cli("generate", "a cat", "-m", weights, "--config", tiny_flux, "--steps", "1")
    assert result.exit_code == 2, result.stderr
    assert "llama-Q8_0.gguf holds no FLUX.1 or SD3 transformer weights" in result.stderr


GGUF_COMMON = ("--steps", "2", "--seed", "4", *SIZE)


def test_an_f32_gguf_transformer_with_config_makes_the_folders_pixels(
    cli, family_model: tuple[str, Path], tmp_path: Path
) -> None:
    name, folder = family_model
    weights = _gguf_file(folder, tmp_path / f"{name}-tiny-F32.gguf")
    single = cli("generate", "a cat", "-m", weights, "--config", folder, *GGUF_COMMON, "-o", "single.png")
    assert single.exit_code == 0, single.stderr
    got = pixels("single.png").astype(int)
    expected = _plain_diffusers_gguf(weights, folder, 4, num_inference_steps=2, width=64, height=64)
    assert np.array_equal(got, expected)
    whole = cli("generate", "a cat", "-m", folder, *GGUF_COMMON, "-o", "folder.png")
    assert whole.exit_code == 0, whole.stderr
    # The same weights bit for bit, yet not always the same pixels: the GGUF loader copies each tensor
    # into fresh (16-byte aligned) memory, while the folder's are memory-mapped where the safetensors
    # header puts them (8 bytes off here), and CPU matmul kernels round differently at 8 than at 16
    # (~4e-7 on the transformer's output; 1 level on a few pixels). So: within a level or two.
    assert np.abs(got - pixels("folder.png").astype(int)).max() <= 2
    text, record = params_and_record("single.png")
    assert record["model"] == f"{name}-tiny-F32" and record["config"] == folder.name
    assert record["family"] == name
    assert f"Model hash: {record['model_hash']}" in text


def test_an_f16_gguf_with_a_q8_0_tensor_makes_what_diffusers_makes_of_it(
    cli, tiny_flux: Path, tmp_path: Path
) -> None:
    quantized = ("transformer_blocks.0.ff.net.0.proj.weight",)  # rows of 32: Q8_0's block size
    weights = _gguf_file(tiny_flux, tmp_path / "flux1-tiny-Q8_0.gguf", f16=True, q8_0=quantized)
    result = cli("generate", "a cat", "-m", weights, "--config", tiny_flux, *GGUF_COMMON, "-o", "q.png")
    assert result.exit_code == 0, result.stderr
    got = pixels("q.png").astype(int)
    assert got.std() > 1
    from gguf import GGMLQuantizationType, GGUFReader

    kinds = {t.name: t.tensor_type for t in GGUFReader(str(weights)).tensors}
    assert kinds[quantized[0]] == GGMLQuantizationType.Q8_0
    assert kinds["proj_out.weight"] == GGMLQuantizationType.F16
    from diffusers.quantizers.gguf.utils import GGUFLinear, GGUFParameter

    layer = pipelines.load_model(ModelRequest(str(weights), config=str(tiny_flux))).pipe.transformer
    layer = layer.transformer_blocks[0].ff.net[0].proj
    assert isinstance(layer, GGUFLinear) and isinstance(layer.weight, GGUFParameter)  # dequantized as it runs
    expected = _plain_diffusers_gguf(weights, tiny_flux, 4, num_inference_steps=2, width=64, height=64)
    assert np.array_equal(got, expected)


def test_a_pipeline_that_picks_its_own_size_is_recorded_as_made() -> None:
    from sdcli.generation.decoding import Decoded

    made = Decoded(pixels=[np.zeros((32, 48, 3))], flagged=[False], vae_upcast=False)
    assert family_runs.actual_size(made, 48, 32) == ({}, ())
    size, notes = family_runs.actual_size(made, 64, 64)
    assert size == {"width": 48, "height": 32} and "made 48x32 images, not the 64x64" in notes[0]


def test_a_generic_pipeline_gets_only_the_arguments_it_names(tiny_flux: Path) -> None:
    pipe = pipelines.load_model(ModelRequest(str(tiny_flux))).pipe
    arguments = {"prompt": ["a"], "guidance_scale": 2.0, "strength": 0.5}
    assert family_runs.call_arguments(GENERIC, pipe, arguments) == {
        "prompt": ["a"],
        "guidance_scale": 2.0,
    }
    assert family_runs.call_arguments(FLUX, pipe, arguments) == arguments


def test_a_pipeline_sdcli_knows_nothing_about_runs_as_diffusers_runs_it(cli, tiny_pixart: Path) -> None:
    """PixArt-Sigma: the generic path, where the pipeline encodes and decodes and sdcli checks."""
    result = cli("generate", "a cat", "-m", tiny_pixart, "--steps", "2", "--seed", "6", *SIZE, "-o", "g.png")
    assert result.exit_code == 0, result.stderr
    expected = plain_diffusers(tiny_pixart, "a cat", 6, num_inference_steps=2, width=64, height=64)
    assert np.array_equal(pixels("g.png").astype(int), expected)
    text, record = params_and_record("g.png")
    # Steps and guidance left alone would be the pipeline's own defaults (20, 4.5); --steps 2 was given.
    assert record["family"] == "generic" and record["pipeline"] == "PixArtSigmaPipeline"
    assert record["steps"] == 2 and record["guidance"] == 4.5 and "CFG scale: 4.5" in text
