"""Tiny random-weight FLUX.1-dev, FLUX.1-schnell, SD3, PixArt and the newer families' pipelines, saved
once per session with `save_pretrained` and loaded back through the real loading code, as a user's folder
would be.

A plugin module registered in tests/conftest.py, like tests/model_fixtures.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdcli.diagnostics.tiny_new_families import NEW_FAMILIES


def save_family(root: Path, family: str) -> Path:
    from sdcli.diagnostics.tiny import TinySpec
    from sdcli.diagnostics.tiny_families import build_tiny_family_pipeline
    from sdcli.diagnostics.tiny_new_families import NEW_FAMILIES, build_tiny_new_family_pipeline

    folder = root / f"tiny-{family}"
    build = build_tiny_new_family_pipeline if family in NEW_FAMILIES else build_tiny_family_pipeline
    build(TinySpec(family)).save_pretrained(folder)
    return folder


def plain_diffusers(
    folder: Path, prompt: str, seed: int, guider_scale: float | None = None, **kwargs: object
):
    """What a user's own script makes: the pipeline as diffusers loads it, a CPU generator, PIL output.
    `guider_scale`: the CFG of a pipeline that keeps it in its `guider` component (HunyuanImage), set as
    diffusers documents it."""
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    if guider_scale is not None:
        pipe.guider = pipe.guider.new(guidance_scale=guider_scale)
    # By name: Flux2KleinPipeline's first parameter is `image`, not `prompt`.
    image = pipe(prompt=prompt, generator=torch.Generator("cpu").manual_seed(seed), **kwargs).images[0]
    return np.asarray(image.convert("RGB")).astype(int)


@pytest.fixture(scope="session")
def family_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("family-models")


@pytest.fixture(scope="session")
def tiny_flux(family_models: Path) -> Path:
    return save_family(family_models, "flux")


@pytest.fixture(scope="session")
def tiny_flux_schnell(family_models: Path) -> Path:
    return save_family(family_models, "flux-schnell")


@pytest.fixture(scope="session")
def tiny_pixart(family_models: Path) -> Path:
    return save_family(family_models, "pixart")


@pytest.fixture(scope="session")
def tiny_sd3(family_models: Path) -> Path:
    return save_family(family_models, "sd3")


@pytest.fixture(scope="session", params=NEW_FAMILIES)
def new_family_model(request: pytest.FixtureRequest, family_models: Path) -> tuple[str, Path]:
    """Each family sdcli has no special path for, saved once per session (pytest groups its tests)."""
    return request.param, save_family(family_models, request.param)
