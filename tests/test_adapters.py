"""LoRAs and textual-inversion embeddings on the tiny pipelines, through the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from sdcli.core.specs import EmbeddingSpec, LoraSpec
from tests.model_fixtures import EMBEDDING_TOKEN
from tests.png_helpers import params_and_record, pixels


def run(cli, model: Path, *extra: object, prompt: str = "a red boat", out: str = "out.png"):
    return cli("generate", prompt, "-m", model, "--steps", "2", "--seed", "9", "-o", out, *extra)


@pytest.mark.parametrize(
    ("text", "source", "scale"),
    [
        ("style.safetensors", "style.safetensors", 1.0),
        ("style.safetensors:0.6", "style.safetensors", 0.6),
        ("loras/style.safetensors:-1", "loras/style.safetensors", -1.0),
        ("org/repo:0.5", "org/repo", 0.5),
        ("org/repo/file.safetensors:1e-1", "org/repo/file.safetensors", 0.1),
        ("C:", "C:", 1.0),  # a drive letter is no scale
        ("C:\\loras\\style.safetensors", "C:\\loras\\style.safetensors", 1.0),
        ("C:\\loras\\style.safetensors:0.8", "C:\\loras\\style.safetensors", 0.8),
        ("dir:v2/style.safetensors", "dir:v2/style.safetensors", 1.0),
    ],
)
def test_lora_spec(text: str, source: str, scale: float) -> None:
    assert LoraSpec.parse(text) == LoraSpec(source, scale)


@pytest.mark.parametrize(
    ("text", "source", "token"),
    [
        ("emb.safetensors", "emb.safetensors", None),
        ("emb.safetensors:my-token", "emb.safetensors", "my-token"),
        ("C:\\emb\\bad.pt", "C:\\emb\\bad.pt", None),
        ("dir:v2/emb.safetensors", "dir:v2/emb.safetensors", None),
    ],
)
def test_embedding_spec(text: str, source: str, token: str | None) -> None:
    assert EmbeddingSpec.parse(text) == EmbeddingSpec(source, token)


def test_lora_scale_zero_is_the_model_and_scale_one_changes_it(cli, tiny_sd: Path, tiny_lora: Path) -> None:
    runs = {
        "none": run(cli, tiny_sd, out="none.png"),
        "zero": run(cli, tiny_sd, "--lora", f"{tiny_lora}:0", out="zero.png"),
        "one": run(cli, tiny_sd, "--lora", str(tiny_lora), out="one.png"),
        "folder": run(cli, tiny_sd, "--lora", str(tiny_lora.parent), out="folder.png"),
    }
    assert all(r.exit_code == 0 for r in runs.values()), [r.stderr for r in runs.values()]
    assert np.array_equal(pixels("none.png"), pixels("zero.png"))
    assert not np.array_equal(pixels("none.png"), pixels("one.png"))
    assert np.array_equal(pixels("one.png"), pixels("folder.png"))  # a folder with one weights file

    text, record = params_and_record("one.png")
    data = tiny_lora.read_bytes()
    addnet = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little") :]).hexdigest()[:12]
    assert record["loras"] == [{"name": "pytorch_lora_weights", "hash": addnet, "scale": 1.0}]
    assert f'Lora hashes: "pytorch_lora_weights: {addnet}"' in text
    assert params_and_record("none.png")[1]["loras"] is None


def test_a_lora_for_another_model_exits_2_naming_it(cli, tiny_sd: Path, tiny_lora_sdxl: Path) -> None:
    result = run(cli, tiny_sd, "--lora", tiny_lora_sdxl)
    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "LoRA sdxl-style does not fit this model" in errors[0]
    assert "Traceback" not in result.stderr and "Loading" not in result.stderr


def test_missing_and_pickled_loras_are_usage_errors(cli, tiny_sd: Path, tmp_path: Path) -> None:
    missing = run(cli, tiny_sd, "--lora", tmp_path / "nope.safetensors:0.5")
    assert missing.exit_code == 2 and "nope.safetensors: no such file" in missing.stderr
    pickled = tmp_path / "old.pt"
    pickled.write_bytes(b"x")
    result = run(cli, tiny_sd, "--lora", pickled)
    assert result.exit_code == 2 and "--allow-pickle" in result.stderr


def test_hub_lora_is_downloaded_once_then_used_offline(
    cli, hub_server, tiny_sd: Path, tiny_lora: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add_repo("org/tiny-lora", tiny_lora.parent)
    online = run(cli, tiny_sd, "--lora", "org/tiny-lora:0.7", out="online.png")
    assert online.exit_code == 0, online.stderr
    assert params_and_record("online.png")[1]["loras"][0]["name"] == "tiny-lora"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(hub_server.requests)
    offline = run(cli, tiny_sd, "--lora", "org/tiny-lora/pytorch_lora_weights.safetensors:0.7", out="off.png")
    assert offline.exit_code == 0, offline.stderr
    assert len(hub_server.requests) == before
    assert np.array_equal(pixels("online.png"), pixels("off.png"))

    uncached = run(cli, tiny_sd, "--lora", "org/other-lora", out="x.png")
    assert uncached.exit_code == 3
    assert "`sdcli download org/other-lora`" in uncached.stderr


def test_embedding_token_changes_the_image_and_nothing_else(cli, tiny_sd: Path, tiny_embedding: Path) -> None:
    with_token = f"a photo of {EMBEDDING_TOKEN}"
    plain = run(cli, tiny_sd, prompt=with_token, out="plain.png")
    loaded = run(cli, tiny_sd, "--embedding", tiny_embedding, prompt=with_token, out="loaded.png")
    unused = run(cli, tiny_sd, "--embedding", tiny_embedding, prompt="a photo of a dog", out="unused.png")
    reference = run(cli, tiny_sd, prompt="a photo of a dog", out="reference.png")
    assert all(r.exit_code == 0 for r in (plain, loaded, unused, reference)), loaded.stderr
    assert not np.array_equal(pixels("plain.png"), pixels("loaded.png"))
    assert np.array_equal(pixels("unused.png"), pixels("reference.png"))

    text, record = params_and_record("loaded.png")
    sha = hashlib.sha256(tiny_embedding.read_bytes()).hexdigest()[:12]
    assert record["embeddings"] == [{"name": EMBEDDING_TOKEN, "hash": sha, "token": EMBEDDING_TOKEN}]
    assert f'TI hashes: "{EMBEDDING_TOKEN}: {sha}"' in text
    assert record["prompt"] == with_token


def test_embedding_with_its_own_token(cli, tiny_sd: Path, tiny_embedding: Path) -> None:
    result = run(cli, tiny_sd, "--embedding", f"{tiny_embedding}:<boat>", prompt="a <boat>")
    assert result.exit_code == 0, result.stderr
    assert params_and_record("out.png")[1]["embeddings"][0]["token"] == "<boat>"


def test_sdxl_embedding_with_one_vector_per_text_encoder(cli, tiny_sdxl: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "xl-emb.safetensors"
    gen = torch.Generator().manual_seed(4)
    vectors = {name: torch.randn(2, 32, generator=gen) for name in ("clip_l", "clip_g")}
    save_file(vectors, path)
    plain = run(cli, tiny_sdxl, prompt="a xl-emb", out="plain.png")
    loaded = run(cli, tiny_sdxl, "--embedding", path, prompt="a xl-emb", out="loaded.png")
    assert plain.exit_code == 0 and loaded.exit_code == 0, loaded.stderr
    assert not np.array_equal(pixels("plain.png"), pixels("loaded.png"))
    # An SD 1.x embedding has no vector for SDXL's second text encoder.
    sd_embedding = tmp_path / "sd-emb.safetensors"
    save_file({"emb_params": torch.randn(1, 32, generator=gen)}, sd_embedding)
    refused = run(cli, tiny_sdxl, "--embedding", sd_embedding, out="refused.png")
    assert refused.exit_code == 2 and "sd-emb is an SD 1.x/2.x embedding" in refused.stderr
