"""The families diffusers runs that sdcli has no special path for (Qwen-Image, FLUX.2 klein, Chroma,
Z-Image, Sana, Lumina2): each tiny pipeline, run through the CLI, makes the pixels a plain diffusers
script makes, records what it ran, and remakes itself from its PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.family_fixtures import plain_diffusers
from tests.png_helpers import params_and_record, pixels

PIPELINES = {
    "qwen-image": "QwenImagePipeline",
    "flux2-klein": "Flux2KleinPipeline",
    "chroma": "ChromaPipeline",
    "z-image": "ZImagePipeline",
    "sana": "SanaPipeline",
    "lumina2": "Lumina2Pipeline",
}
RUN = ("--steps", "2", "-W", "32", "-H", "32")


def test_generate_matches_a_plain_diffusers_script(cli, new_family_model: tuple[str, Path]) -> None:
    name, folder = new_family_model
    result = cli("generate", "a cat", "-m", folder, *RUN, "--seed", "3", "-o", "x.png")
    assert result.exit_code == 0, result.stderr
    expected = plain_diffusers(folder, "a cat", 3, num_inference_steps=2, width=32, height=32)
    assert np.array_equal(pixels("x.png").astype(int), expected)
    _, record = params_and_record("x.png")
    assert record["pipeline"] == PIPELINES[name] and record["family"] == "generic"
    assert (record["width"], record["height"], record["steps"], record["seed"]) == (32, 32, 2, 3)
    again = cli("generate", "--from", "x.png", "-m", folder, "-o", "y.png")
    assert again.exit_code == 0, again.stderr
    assert np.array_equal(pixels("x.png"), pixels("y.png"))


def test_info_check_runs_the_model(cli, new_family_model: tuple[str, Path]) -> None:
    name, folder = new_family_model
    result = cli("info", "--check", "-m", folder, "--json")
    assert result.exit_code == 0, result.stderr
    check = json.loads(result.stdout)["check"]
    assert check["ok"] and check["pipeline"] == PIPELINES[name]


# The `__call__` parameter each family's classifier-free guidance goes by, and its default (what sdcli
# records when -g is left alone); None: the pipeline takes no negative prompt.
CFG = {
    "qwen-image": ("true_cfg_scale", 4.0),  # guidance_scale is for guidance-distilled Qwen-Image only
    "flux2-klein": (None, 4.0),  # guides away from "" itself
    "chroma": ("guidance_scale", 5.0),
    "z-image": ("guidance_scale", 5.0),
    "sana": ("guidance_scale", 4.5),
    "lumina2": ("guidance_scale", 4.0),
}


def test_guidance_and_negative_reach_the_pipelines_cfg(cli, new_family_model: tuple[str, Path]) -> None:
    name, folder = new_family_model
    parameter, default = CFG[name]
    plain = cli("generate", "a cat", "-m", folder, *RUN, "--seed", "5", "-o", "plain.png")
    assert plain.exit_code == 0, plain.stderr
    assert params_and_record("plain.png")[1]["guidance"] == default
    negative = cli(
        "generate", "a cat", "-m", folder, *RUN, "--seed", "5", "-n", "a dog", "-g", "6", "-o", "n.png"
    )
    if parameter is None:
        assert negative.exit_code == 2
        assert f"{PIPELINES[name]} has no negative_prompt parameter" in negative.stderr
        return
    assert negative.exit_code == 0, negative.stderr
    kwargs = {parameter: 6.0, "negative_prompt": "a dog"}
    expected = plain_diffusers(folder, "a cat", 5, num_inference_steps=2, width=32, height=32, **kwargs)
    got = pixels("n.png").astype(int)
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, pixels("plain.png").astype(int))  # the negative did something
    text, record = params_and_record("n.png")
    assert record["guidance"] == 6.0 and record["negative"] == "a dog" and "CFG scale: 6" in text


def test_a_pipeline_with_no_native_size_gets_the_1024_diffusers_falls_back_to() -> None:
    """Z-Image has no default_sample_size and its transformer's config no sample_size."""
    from types import SimpleNamespace

    from sdcli.generation import engine

    pipe = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace()), vae_scale_factor=8)
    assert engine.native_size(pipe) == (1024, 1024)
