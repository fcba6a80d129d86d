"""Single-file checkpoints: family detection, offline configuration, pickles, and cached file hashes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from sdcli.errors import UsageError
from sdcli.model import checkpoints, hashes
from tests.model_fixtures import config_only_copy, save_checkpoint
from tests.png_helpers import params_and_record, pixels

SD1_REFERENCE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD1_CLIP = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SDXL_OPENCLIP = "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"


class Payload:
    """Any object other than tensors and containers: torch.load(weights_only=True) must refuse it."""


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline for this test only: `--offline` switches the whole process, so put everything back after."""
    from huggingface_hub import constants

    from sdcli.hub import settings

    monkeypatch.setattr(settings, "_offline_flag", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run(cli, model: Path | str, *extra: str, out: str = "out.png"):
    return cli("generate", "a red boat", "-m", model, "--steps", "2", "--seed", "5", "-o", out, *extra)


def test_checkpoint_gives_the_pixels_of_the_folder_it_was_made_from(
    cli, offline, tiny_sd: Path, tiny_checkpoint: Path, tiny_sd_config: Path
) -> None:
    # The config folder holds no weights, so every weight must come from the checkpoint.
    assert not list(tiny_sd_config.rglob("*.safetensors"))
    folder = run(cli, tiny_sd, out="folder.png")
    single = run(cli, tiny_checkpoint, "--config", tiny_sd_config, "--offline", out="single.png")
    assert folder.exit_code == 0, folder.stderr
    assert single.exit_code == 0, single.stderr
    assert np.array_equal(pixels("folder.png"), pixels("single.png"))

    text, record = params_and_record("single.png")
    sha = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert f"Model hash: {sha[:10]}, Model: tiny-ckpt," in text
    assert record["model"] == "tiny-ckpt" and record["model_hash"] == sha[:10]
    assert record["config"] == "tiny-sd-config"
    assert str(tiny_checkpoint.parent) not in json.dumps(record)  # names, never paths


def test_without_a_cached_config_offline_says_what_to_download(cli, offline, tiny_checkpoint: Path) -> None:
    result = run(cli, tiny_checkpoint, "--offline")
    assert result.exit_code == 3, result.stderr
    assert "SD 1.x checkpoint" in result.stderr
    assert f"sdcli download {SD1_REFERENCE} --config-only" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_only_download_then_offline_generation(
    cli, hub_server, tiny_sd: Path, tiny_checkpoint: Path
) -> None:
    hub_server.add_repo(SD1_REFERENCE, tiny_sd)  # stands in for the real reference repo
    fetched = cli("download", SD1_REFERENCE, "--config-only")
    assert fetched.exit_code == 0, fetched.stderr
    assert not list(Path(fetched.stdout.strip()).rglob("*.safetensors"))
    before = len(hub_server.requests)
    result = run(cli, tiny_checkpoint, "--offline", "--no-safety-checker")
    assert result.exit_code == 0, result.stderr
    assert len(hub_server.requests) == before, "loading a single file made HTTP requests"
    assert params_and_record("out.png")[1]["config"] == SD1_REFERENCE


def test_a_config_of_another_family_is_refused(cli, tiny_checkpoint: Path, tiny_sdxl: Path) -> None:
    result = run(cli, tiny_checkpoint, "--config", tiny_sdxl)
    assert result.exit_code == 2, result.stderr
    assert "SD 1.x checkpoint" in result.stderr and "StableDiffusionXLPipeline" in result.stderr


def test_pickles_are_refused_without_allow_pickle(cli, tmp_path: Path) -> None:
    path = tmp_path / "old.ckpt"
    path.write_bytes(b"not even read")
    result = run(cli, path)
    assert result.exit_code == 2
    assert "old.ckpt is a pickle" in result.stderr and "--allow-pickle" in result.stderr


def test_allow_pickle_loads_tensors_only(
    cli, tiny_sd: Path, tiny_sd_config: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    state = load_file(tiny_checkpoint)
    ckpt = tmp_path / "tiny-ckpt.ckpt"
    torch.save({"state_dict": state, "global_step": 1}, ckpt)  # as Lightning-era checkpoints nest it
    reference = run(cli, tiny_checkpoint, "--config", tiny_sd_config, out="st.png")
    result = run(cli, ckpt, "--config", tiny_sd_config, "--allow-pickle", out="ckpt.png")
    assert reference.exit_code == 0 and result.exit_code == 0, result.stderr
    assert np.array_equal(pixels("st.png"), pixels("ckpt.png"))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": state, "payload": Payload()}, evil)
    result = run(cli, evil, "--config", tiny_sd_config, "--allow-pickle", out="evil.png")
    assert result.exit_code == 2, result.stderr
    assert "objects other than tensors" in result.stderr


def shapes_with(*keys: str, conv_in: tuple[int, ...] = (320, 4, 3, 3)) -> dict[str, tuple[int, ...]]:
    return {"model.diffusion_model.input_blocks.0.0.weight": conv_in, **{key: (1,) for key in keys}}


@pytest.mark.parametrize(
    ("keys", "conv_in", "family"),
    [
        ((SD1_CLIP,), 4, "SD 1.x"),
        (("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",), 4, "SD 2.x"),
        ((SDXL_OPENCLIP,), 4, "SDXL"),
        ((SD1_CLIP,), 9, "SD 1.x inpainting"),
        ((SDXL_OPENCLIP,), 9, "SDXL inpainting"),
    ],
)
def test_family_from_the_text_encoder_keys(keys: tuple[str, ...], conv_in: int, family: str) -> None:
    found = checkpoints.detect_family(shapes_with(*keys, conv_in=(320, conv_in, 3, 3)), "x.safetensors")
    assert found.label == family


def test_family_of_the_tiny_checkpoint_is_read_from_its_header(tiny_checkpoint: Path) -> None:
    shapes = checkpoints.safetensors_shapes(tiny_checkpoint)
    assert checkpoints.detect_family(shapes, tiny_checkpoint.name).reference == SD1_REFERENCE


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}, "--lora"),
        (shapes_with(), "no text encoder"),
    ],
)
def test_files_that_are_no_runnable_checkpoint_are_refused(shapes: dict, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        checkpoints.detect_family(shapes, "x.safetensors")
    assert message in f"{caught.value.message} {caught.value.hint}"


def test_a_refiner_checkpoint_is_told_apart_and_runs_only_as_refiner() -> None:
    shapes = shapes_with("conditioner.embedders.0.model.transformer.resblocks.0.x")
    family = checkpoints.detect_family(shapes, "x.safetensors")
    assert family.refiner and family.label == "SDXL refiner"
    checkpoints.check_role(family, "x.safetensors", "--refiner")
    with pytest.raises(UsageError) as caught:
        checkpoints.check_role(family, "x.safetensors", "--model")
    assert "--refiner x.safetensors" in str(caught.value.hint)
    with pytest.raises(UsageError, match="a refiner must be an SDXL"):
        checkpoints.check_role(checkpoints.FAMILIES["sd1"], "x.safetensors", "--refiner")


def test_a_file_hash_is_computed_once_per_version_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SDCLI_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights" * 1000)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert hashes.sha256(path) == expected
    entry = json.loads((tmp_path / "cache" / "hashes.json").read_text())[f"file:{path.resolve()}"]
    assert entry["sha256"] == expected and entry["size"] == 7000

    def no_reading(*args: object) -> str:
        raise AssertionError("the file was read again")

    monkeypatch.setattr(hashes, "_compute", no_reading)
    assert hashes.model_hash(path) == expected[:10]

    monkeypatch.undo()
    monkeypatch.setenv("SDCLI_CACHE_DIR", str(tmp_path / "cache"))
    path.write_bytes(b"other weights")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert hashes.sha256(path) == hashlib.sha256(b"other weights").hexdigest()


def test_lora_hash_is_of_the_tensor_data_as_in_a1111(tiny_lora: Path) -> None:
    data = tiny_lora.read_bytes()
    header = int.from_bytes(data[:8], "little")
    assert hashes.lora_hash(tiny_lora) == hashlib.sha256(data[8 + header :]).hexdigest()[:12]


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_sd2_and_sdxl_checkpoints_give_the_pixels_of_their_folders(
    cli, family: str, tiny_sd: Path, wide_sdxl: Path, tmp_path: Path
) -> None:
    folder = tiny_sd if family == "sd2" else wide_sdxl
    config = config_only_copy(folder, tmp_path / "config")
    path = save_checkpoint(folder, family, tmp_path / f"tiny-{family}.safetensors")
    label = {"sd2": "SD 2.x", "sdxl": "SDXL"}[family]
    assert checkpoints.detect_family(checkpoints.safetensors_shapes(path), path.name).label == label
    from_folder = run(cli, folder, out="folder.png")
    single = run(cli, path, "--config", config, out="single.png")
    assert from_folder.exit_code == 0 and single.exit_code == 0, single.stderr
    assert np.array_equal(pixels("folder.png"), pixels("single.png"))


def test_model_index_is_read_once_per_load(tiny_sd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sdcli reads a model's model_index.json once per load (diffusers reads it for itself too)."""
    from sdcli.core.requests import ModelRequest
    from sdcli.hub import selection
    from sdcli.model import pipelines

    reads = []
    real = selection.read_model_index

    def counted(path: Path) -> dict:
        reads.append(path)
        return real(path)  # the real reader runs: this only counts

    monkeypatch.setattr(selection, "read_model_index", counted)
    model = pipelines.load_model(ModelRequest(str(tiny_sd), safety_checker=False))
    assert model.source.pipeline_class == "StableDiffusionPipeline"
    assert reads == [tiny_sd / "model_index.json"]
