"""Runs a generation request on a loaded pipeline and yields images with their records. Never prints."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any

from sdcli import __version__, schedulers
from sdcli.errors import CheckFailed
from sdcli.pipelines import LoadedModel
from sdcli.requests import GenerationRequest
from sdcli.runtime import dtype_name, generators

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class GeneratedImage:
    image: Any  # PIL.Image.Image
    seed: int
    index: int
    record: dict[str, Any]
    seconds: float


def versions() -> dict[str, str]:
    found = {"sdcli": __version__}
    for package in ("diffusers", "transformers", "torch"):
        try:
            found[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            found[package] = "unknown"
    return found


def native_size(pipe: Any) -> tuple[int, int]:
    size = getattr(pipe, "default_sample_size", None) or pipe.unet.config.sample_size
    return size * pipe.vae_scale_factor, size * pipe.vae_scale_factor


def base_record(model: LoadedModel, request: GenerationRequest, width: int, height: int) -> dict[str, Any]:
    """Everything that decides the pixels, in the shape `sdcli.metadata` writes and reads."""
    scheduler = model.pipe.scheduler
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    sampler, schedule = schedulers.describe(type(scheduler).__name__, config)
    return {
        "schema": 1,
        "prompt": request.prompt,
        "negative": request.negative,
        "model": model.source.name,
        "model_hash": model.source.model_hash,
        "revision": model.source.revision,
        "commit": model.source.commit,
        "variant": model.request.variant,
        "pipeline": type(model.pipe).__name__,
        "sampler": sampler,
        "schedule": schedule,
        "scheduler": {"class": type(scheduler).__name__, "config": config},
        "steps": request.steps,
        "guidance": request.guidance,
        "width": width,
        "height": height,
        "strength": request.strength,
        "dtype": dtype_name(model.dtype),
        "device": model.device.type,
        "rng": "cpu",
        "versions": versions(),
    }


def generate(
    model: LoadedModel,
    request: GenerationRequest,
    *,
    inputs: dict[str, Any] | None = None,
    on_step: StepCallback | None = None,
) -> Iterator[GeneratedImage]:
    """Yield each image as soon as its batch is decoded; image i has seed `request.seed + i`."""
    pipe = model.pipe
    native_w, native_h = native_size(pipe)
    width, height = request.width or native_w, request.height or native_h
    record = base_record(model, request, width, height)
    call = dict(
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        output_type="np",
        **(inputs or {}),
    )
    # Image-to-image pipelines take their size from the input image and have no width/height parameters
    # (the values would vanish into **kwargs); the caller sizes the image to the request beforehand.
    if "width" in inspect.signature(pipe.__call__).parameters:
        call.update(width=width, height=height)
    if request.strength is not None:
        call["strength"] = request.strength
    if on_step is not None:

        def step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            on_step(step + 1, int(getattr(pipe, "num_timesteps", 0) or request.steps))
            return kwargs

        call["callback_on_step_end"] = step_end

    seeds = request.seeds
    for start in range(0, len(seeds), request.batch_size):
        chunk = seeds[start : start + request.batch_size]
        began = time.perf_counter()
        output = pipe(
            prompt=[request.prompt] * len(chunk),
            negative_prompt=[request.negative] * len(chunk),
            generator=generators(chunk),
            **call,
        )
        seconds = (time.perf_counter() - began) / len(chunk)
        for offset, (seed, pixels) in enumerate(zip(chunk, output.images, strict=True)):
            index = start + offset
            yield GeneratedImage(
                image=to_pil(pixels),
                seed=seed,
                index=index,
                record={**record, "seed": seed, "index": index, "timings": {"seconds": round(seconds, 3)}},
                seconds=seconds,
            )


def to_pil(pixels: Any) -> Any:
    """Turn one decoded float image into 8-bit RGB, refusing NaN/Inf rather than saving a black image."""
    import numpy as np
    from PIL import Image

    if not np.isfinite(pixels).all():
        raise CheckFailed(
            "the decoded image holds NaN or Inf values", hint="try --dtype fp32 (half precision overflowed)"
        )
    return Image.fromarray((pixels * 255).round().clip(0, 255).astype("uint8"))
