"""The families diffusers runs that sdcli has no special path for (Qwen-Image, FLUX.2 klein and dev,
Chroma, Z-Image, Sana, Lumina2, AuraFlow, CogView4, Kandinsky 3, HunyuanImage 2.1, Ovis-Image): each tiny
pipeline, run through the CLI, makes the pixels a plain diffusers script makes, records what it ran, and
remakes itself from its PNG."""

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
    "aura-flow": "AuraFlowPipeline",
    "cogview4": "CogView4Pipeline",
    "kandinsky3": "Kandinsky3Pipeline",
    "hunyuan-image": "HunyuanImagePipeline",
    "flux2": "Flux2Pipeline",
    "ovis-image": "OvisImagePipeline",
}
# Kandinsky 3 rounds every size up to a multiple of 64 px.
SIZES = {"kandinsky3": 64}


def run(name: str) -> tuple[str, ...]:
    size = str(SIZES.get(name, 32))
    return ("--steps", "2", "-W", size, "-H", size)


def plain(name: str, folder: Path, seed: int, **kwargs: object) -> np.ndarray:
    size = SIZES.get(name, 32)
    return plain_diffusers(folder, "a cat", seed, num_inference_steps=2, width=size, height=size, **kwargs)


def test_generate_matches_a_plain_diffusers_script(cli, new_family_model: tuple[str, Path]) -> None:
    name, folder = new_family_model
    result = cli("generate", "a cat", "-m", folder, *run(name), "--seed", "3", "-o", "x.png")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(pixels("x.png").astype(int), plain(name, folder, 3))
    _, record = params_and_record("x.png")
    assert record["pipeline"] == PIPELINES[name] and record["family"] == "generic"
    size = SIZES.get(name, 32)
    assert (record["width"], record["height"], record["steps"], record["seed"]) == (size, size, 2, 3)
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
    "aura-flow": ("guidance_scale", 3.5),
    "cogview4": ("guidance_scale", 5.0),
    "kandinsky3": ("guidance_scale", 3.0),
    "hunyuan-image": ("guider", 3.5),  # its `guider` component's guidance_scale: __call__ takes none
    "flux2": (None, 4.0),  # FLUX.2 dev's guidance is distilled into the transformer
    "ovis-image": ("guidance_scale", 5.0),
}


def test_guidance_and_negative_reach_the_pipelines_cfg(cli, new_family_model: tuple[str, Path]) -> None:
    name, folder = new_family_model
    parameter, default = CFG[name]
    alone = cli("generate", "a cat", "-m", folder, *run(name), "--seed", "5", "-o", "plain.png")
    assert alone.exit_code == 0, alone.stderr
    assert params_and_record("plain.png")[1]["guidance"] == default
    negative = cli(
        "generate", "a cat", "-m", folder, *run(name), "--seed", "5", "-n", "a dog", "-g", "6", "-o", "n.png"
    )
    if parameter is None:
        assert negative.exit_code == 2
        assert f"{PIPELINES[name]} has no negative_prompt parameter" in negative.stderr
        guided = cli("generate", "a cat", "-m", folder, *run(name), "--seed", "5", "-g", "6", "-o", "g.png")
        assert guided.exit_code == 0, guided.stderr
        assert np.array_equal(pixels("g.png").astype(int), plain(name, folder, 5, guidance_scale=6.0))
        return
    assert negative.exit_code == 0, negative.stderr
    kwargs = {"guider_scale" if parameter == "guider" else parameter: 6.0, "negative_prompt": "a dog"}
    got = pixels("n.png").astype(int)
    assert np.array_equal(got, plain(name, folder, 5, **kwargs))
    assert not np.array_equal(got, pixels("plain.png").astype(int))  # the negative did something
    text, record = params_and_record("n.png")
    assert record["guidance"] == 6.0 and record["negative"] == "a dog" and "CFG scale: 6" in text


def test_a_pipeline_with_no_native_size_gets_the_1024_diffusers_falls_back_to() -> None:
    """Z-Image has no default_sample_size and its transformer's config no sample_size."""
    from types import SimpleNamespace

    from sdcli.generation import engine

    pipe = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace()), vae_scale_factor=8)
    assert engine.native_size(pipe) == (1024, 1024)


def test_guidance_on_a_guider_is_put_back_after_the_call() -> None:
    """A loaded pipeline outlives the request: a warm worker's next run must find the model's own scale."""
    from diffusers import AdaptiveProjectedMixGuidance

    from sdcli.generation import family_runs
    from sdcli.model.families import GENERIC

    class Pipe:
        def __init__(self) -> None:
            self.guider = AdaptiveProjectedMixGuidance()
            self.seen = 0.0

        @property
        def components(self) -> dict[str, object]:
            return {"guider": self.guider, "vae": None}

        def __call__(self, prompt: str) -> None:
            self.seen = self.guider.guidance_scale

    pipe = Pipe()
    original = pipe.guider
    with family_runs.guided(GENERIC, pipe, 6.0):
        pipe("a cat")
    assert pipe.seen == 6.0 and pipe.guider is original and original.guidance_scale == 3.5
