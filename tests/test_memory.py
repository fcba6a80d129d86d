"""Device, dtype and memory policy: NaN retries, OOM handling, memory options, safety checker."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdcli.core.requests import GenerationRequest, MemoryOptions, ModelRequest
from sdcli.errors import CheckFailed, OutOfMemory
from sdcli.generation import engine
from sdcli.model import pipelines

REQUEST = GenerationRequest("a cat", steps=2, seed=1)


def nan_decoder(model: pipelines.LoadedModel, *, always: bool = False) -> None:
    """Make the VAE decoder overflow like an fp16 SDXL VAE does: NaN unless it runs in fp32."""

    def hook(module, args, output):
        return output * torch.nan if always or output.dtype != torch.float32 else output

    model.pipe.vae.decoder.register_forward_hook(hook)


def oom_once(model: pipelines.LoadedModel, times: int = 1) -> None:
    left = [times]

    def hook(module, args):
        if left[0] > 0:
            left[0] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    model.pipe.unet.register_forward_pre_hook(hook)


def test_half_precision_nan_is_decoded_again_in_fp32(tiny_sd: Path) -> None:
    model = pipelines.load_model(ModelRequest(str(tiny_sd), dtype="bf16"))
    nan_decoder(model)
    images = list(engine.generate(model, GenerationRequest("a cat", steps=2, seed=1, count=2).validated()))
    assert all(np.isfinite(np.asarray(g.image)).all() for g in images)
    assert np.asarray(images[0].image).std() > 0  # a real picture, not a black frame
    assert images[0].record["vae_fp32_retry"] is True and images[1].record["vae_fp32_retry"] is True
    assert "decoded in fp32" in images[0].notes[0] and images[1].notes == ()  # warned once
    assert images[0].record["dtype"] == "bf16"


def test_nan_even_in_fp32_is_exit_7_and_writes_nothing(cli, tiny_sd: Path, monkeypatch) -> None:
    real_load = pipelines.load_model

    def load_broken(request):
        model = real_load(request)
        nan_decoder(model, always=True)
        return model

    monkeypatch.setattr(pipelines, "load_model", load_broken)
    result = cli("generate", "a cat", "-m", tiny_sd, "--steps", "1", "-o", "x.png")
    assert result.exit_code == 7
    assert "NaN" in result.stderr and "--dtype fp32" in result.stderr
    assert not Path("x.png").exists()


def test_out_of_memory_is_exit_4_with_a_hint(cli, tiny_sd: Path, monkeypatch) -> None:
    real_load = pipelines.load_model

    def load_small_gpu(request):
        model = real_load(request)
        oom_once(model)
        return model

    monkeypatch.setattr(pipelines, "load_model", load_small_gpu)
    result = cli("generate", "a cat", "-m", tiny_sd, "--steps", "1")
    assert result.exit_code == 4, result.stderr
    assert "out of memory" in result.stderr and "--low-vram" in result.stderr
    assert "Traceback" not in result.stderr


def test_oom_retry_turns_on_vae_tiling_and_records_it(tiny_sd: Path) -> None:
    model = pipelines.load_model(ModelRequest(str(tiny_sd), memory=MemoryOptions(oom_retry=True)))
    oom_once(model)
    (image,) = engine.generate(model, REQUEST.validated())
    assert model.pipe.vae.use_tiling
    assert image.record["oom_fallbacks"] == ["vae tiling"]
    assert image.notes == ("out of memory; retrying with vae tiling",)
    model = pipelines.load_model(ModelRequest(str(tiny_sd), memory=MemoryOptions(oom_retry=True)))
    oom_once(model, times=3)
    with pytest.raises(OutOfMemory):
        list(engine.generate(model, REQUEST.validated()))


def test_memory_options_reach_the_pipeline_and_keep_the_image(tiny_sd: Path) -> None:
    plain = pipelines.load_model(ModelRequest(str(tiny_sd)))
    options = MemoryOptions(vae_tiling=True, vae_slicing=True, attention_slicing=True, channels_last=True)
    lean = pipelines.load_model(ModelRequest(str(tiny_sd), memory=options))
    assert lean.pipe.vae.use_tiling and lean.pipe.vae.use_slicing
    assert lean.pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    request = GenerationRequest("a cat", steps=2, seed=3, count=2, batch_size=2).validated()
    a = [np.asarray(g.image).astype(int) for g in engine.generate(plain, request)]
    b = [np.asarray(g.image).astype(int) for g in engine.generate(lean, request)]
    # Tiles are 32 px on this tiny VAE, so a 64 px image has blended seams; slicing and the rest are exact
    # to a level or so.
    assert all(np.abs(x - y).mean() < 4.0 for x, y in zip(a, b, strict=True))
    record = next(engine.generate(lean, REQUEST.validated())).record
    assert record["memory"]["vae_tiling"] is True and record["memory"]["attention_slicing"] is True


def test_low_vram_spells_out_its_settings_and_offload_is_dropped_on_cpu(cli, tiny_sd: Path) -> None:
    result = cli("generate", "a cat", "-m", tiny_sd, "--steps", "1", "--low-vram", "-o", "x.png")
    assert result.exit_code == 0, result.stderr
    assert (
        result.stderr.count("warning:") == 1
        and "--offload model needs a GPU; ignored on cpu" in result.stderr
    )
    with Image.open("x.png") as im:
        memory = json.loads(im.text["sdcli"])["memory"]
    assert memory == {
        "offload": "none",
        "vae_tiling": True,
        "vae_slicing": True,
        "attention_slicing": False,
        "channels_last": False,
        "compile": False,
        "tiny_vae": None,
    }


def test_missing_gpu_is_exit_5_naming_what_torch_sees(cli, tiny_sd: Path) -> None:
    from sdcli.model.runtime import mps_available

    for device in ("cuda", "cuda:3", *(() if mps_available() else ("mps",))):
        result = cli("generate", "a cat", "-m", tiny_sd, "--device", device)
        assert result.exit_code == 5, result.stderr
        assert "sees: cpu" in result.stderr


def test_tiny_vae_decodes_from_a_local_folder(cli, tiny_sd: Path, tmp_path: Path) -> None:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(tmp_path / "taesd")
    result = cli(
        "generate", "a cat", "-m", tiny_sd, "--steps", "1", "--tiny-vae", tmp_path / "taesd", "-o", "t.png"
    )
    assert result.exit_code == 0, result.stderr
    with Image.open("t.png") as im:
        assert json.loads(im.text["sdcli"])["memory"]["tiny_vae"] == str(tmp_path / "taesd")
    result = cli("generate", "a cat", "-m", tiny_sd, "--tiny-vae", "nobody/taesd", "--offline")
    assert result.exit_code == 3 and "no tiny autoencoder found" in result.stderr


def save_with_safety_checker(tiny_sd: Path, target: Path, flag_everything: bool) -> Path:
    """The tiny model plus a real (tiny, random) safety checker whose thresholds decide every verdict."""
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    small = dict(hidden_size=16, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1)
    config = CLIPConfig(
        text_config=dict(small, vocab_size=100),
        vision_config=dict(small, image_size=32, patch_size=8),
        projection_dim=16,
    )
    checker = StableDiffusionSafetyChecker(config)
    # Cosine distances lie in [-1, 1]: a threshold of -2 flags every image, +2 none.
    checker.concept_embeds_weights.fill_(-2.0 if flag_everything else 2.0)
    checker.special_care_embeds_weights.fill_(2.0)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.register_modules(
        safety_checker=checker, feature_extractor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    )
    pipe.register_to_config(requires_safety_checker=True)
    pipe.save_pretrained(target)
    return target


def test_safety_checker_blanked_images_are_not_written(cli, tiny_sd: Path, tmp_path: Path) -> None:
    model = save_with_safety_checker(tiny_sd, tmp_path / "checked", flag_everything=True)
    result = cli("generate", "a cat", "-m", model, "--steps", "1", "-c", "2", "-o", "out/", "--json")
    assert result.exit_code == 7
    assert result.stderr.count("blanked by the safety checker; not written") == 2
    assert not list(Path("out").glob("*.png"))
    assert json.loads(result.stdout.splitlines()[-1]) == {
        **json.loads(result.stdout.splitlines()[-1]),
        "images": 0,
    }

    result = cli("generate", "a cat", "-m", model, "--steps", "1", "--keep-filtered", "-o", "kept.png")
    assert result.exit_code == 0, result.stderr
    assert Path("kept-nsfw.png").exists() and not Path("kept.png").exists()

    result = cli("generate", "a cat", "-m", model, "--steps", "1", "--no-safety-checker", "-o", "off.png")
    assert result.exit_code == 0, result.stderr
    with Image.open("off.png") as im:
        assert json.loads(im.text["sdcli"])["safety_checker"] is False


def test_safety_checker_passes_clean_images(cli, tiny_sd: Path, tmp_path: Path) -> None:
    model = save_with_safety_checker(tiny_sd, tmp_path / "lenient", flag_everything=False)
    result = cli("generate", "a cat", "-m", model, "--steps", "1", "-o", "ok.png")
    assert result.exit_code == 0, result.stderr
    with Image.open("ok.png") as im:
        assert json.loads(im.text["sdcli"])["safety_checker"] is True
        assert np.asarray(im).std() > 0


def test_device_rng_is_recorded(tiny_sd: Path) -> None:
    model = pipelines.load_model(ModelRequest(str(tiny_sd), rng="device"))
    (image,) = engine.generate(model, REQUEST.validated())
    assert image.record["rng"] == "device"


def test_check_failed_is_the_check_exit_code() -> None:
    assert CheckFailed("x").exit_code == 7


def test_no_garbage_collection_runs_while_a_model_loads(tiny_sd: Path) -> None:
    # Loading creates objects that all live on, so collections only cost time (~12% of import + load).
    # Without the pause this load ran 14 collections; with it, one runs as the collector is switched back on.
    collections: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        pipelines.load_model(ModelRequest(model=str(tiny_sd), device="cpu"))
    finally:
        gc.callbacks.remove(count)
    assert len(collections) <= 1
    assert gc.isenabled()


def test_pausing_collections_keeps_a_disabled_collector_disabled() -> None:
    from sdcli.model import runtime

    gc.disable()
    try:
        with runtime.collections_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with runtime.collections_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
