"""Every sampler in the table generates on a real pipeline, and what the image says is what was asked for."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sdcli.core.requests import GenerationRequest, ModelRequest
from sdcli.generation import engine
from sdcli.images import metadata
from sdcli.model import pipelines, schedulers

HAS_SCIPY = importlib.util.find_spec("scipy") is not None
# diffusers' schedulers trip numpy 2 deprecation warnings thousands of times; they are not sdcli's to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_every_sampler_generates_and_round_trips(tiny_sd: Path, tmp_path: Path) -> None:
    model = pipelines.load_model(ModelRequest(str(tiny_sd)))
    base_config = dict(model.pipe.scheduler.config)
    request = GenerationRequest("a lighthouse", steps=2, seed=1).validated()
    for sampler in schedulers.SAMPLERS:
        schedule = sampler.default_schedule  # what A1111's "Automatic" picks: covers Karras and Exponential
        if not HAS_SCIPY and (sampler.name == "LMS" or schedule == "Beta"):
            continue
        choice = schedulers.resolve(sampler.name, schedule)
        model.pipe.scheduler = schedulers.build(choice, base_config)
        (result,) = engine.generate(model, request)
        assert np.isfinite(np.asarray(result.image, dtype=float)).all()
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.png"
        result.image.save(path, pnginfo=metadata.png_info(result.record))
        params = metadata.read_metadata(path).parameters
        assert params["Sampler"] == sampler.name, sampler.name
        assert params.get("Schedule type") == schedule, sampler.name


@pytest.mark.parametrize(
    ("name", "schedule", "expected"),
    [
        ("Euler a", None, ("Euler a", None)),
        ("DPM++ 2M", "karras", ("DPM++ 2M", "Karras")),
        ("dpm++ 2m sde exponential", None, ("DPM++ 2M SDE", "Exponential")),
        ("UniPC", "sgm_uniform", ("UniPC", "SGM Uniform")),
    ],
)
def test_sampler_through_the_cli(
    cli, tiny_sd: Path, name: str, schedule: str | None, expected: tuple[str, str | None]
) -> None:
    extra = ("--schedule", schedule) if schedule else ()
    result = cli("generate", "a cat", "-m", tiny_sd, "--steps", "2", "--sampler", name, *extra, "-o", "x.png")
    assert result.exit_code == 0, result.stderr
    params = metadata.read_metadata("x.png").parameters
    assert (params["Sampler"], params.get("Schedule type")) == expected
