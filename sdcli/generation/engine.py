"""Runs a generation request on a loaded pipeline and yields images with their records. Never prints."""

from __future__ import annotations

import functools
import gc
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sdcli.core.requests import REFINER_SWITCH, GenerationRequest
from sdcli.errors import OutOfMemory, UsageError, is_allocation_failure, out_of_memory
from sdcli.generation import decoding, family_runs, prompts, upscaling
from sdcli.generation.upscaling import LoadedUpscaler, ModelOptions
from sdcli.images import upscale
from sdcli.model import pipelines, schedulers
from sdcli.model.families import SD, SDXL, Family, of_pipeline
from sdcli.model.pipelines import LoadedModel
from sdcli.model.runtime import dtype_name, generators

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class GeneratedImage:
    image: Any  # PIL.Image.Image
    seed: int
    index: int
    record: dict[str, Any]
    seconds: float
    flagged: bool = False  # blanked by the safety checker
    notes: tuple[str, ...] = ()  # things the user should hear about (a retry, an fp32 decode)


def versions() -> dict[str, str]:
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: each lookup scans the installed distributions (~3 ms), for every prompt."""
    from importlib import metadata as importlib_metadata

    from sdcli import __version__

    found = {"sdcli": __version__}
    for package in ("diffusers", "transformers", "torch"):
        try:
            found[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            found[package] = "unknown"
    return tuple(found.items())


# What pipelines that know no native size of their own make when given none (Z-Image's `height or 1024`).
FALLBACK_SIZE = 1024


def native_size(pipe: Any) -> tuple[int, int]:
    # default_sample_size: SDXL, SD3, FLUX.1 and most other pipelines have it; SD 1.x/2.x use the UNet's,
    # transformer pipelines without it (PixArt) their transformer's. Z-Image has neither: its transformer's
    # config has no sample_size, and its `__call__` falls back to 1024 px.
    size = getattr(pipe, "default_sample_size", None)
    if not size:
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        size = getattr(getattr(denoiser, "config", None), "sample_size", None)
    if not isinstance(size, int) or size < 1:
        return FALLBACK_SIZE, FALLBACK_SIZE
    return size * pipe.vae_scale_factor, size * pipe.vae_scale_factor


def base_record(model: LoadedModel, request: GenerationRequest, width: int, height: int) -> dict[str, Any]:
    """Everything that decides the pixels, in the shape `sdcli.images.metadata` writes and reads."""
    scheduler = model.pipe.scheduler
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    sampler, schedule = schedulers.describe(type(scheduler).__name__, config)
    config = {k: schedulers.storable(v) for k, v in config.items()}  # the record is strict JSON
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
        "rng": model.request.rng,
        "memory": model.memory.as_record(),
        "safety_checker": getattr(model.pipe, "safety_checker", None) is not None,
        "config": model.source.config,
        "clip_skip": request.clip_skip,
        "weighting": request.weighting,
        "long_prompts": request.long_prompts,
        "loras": list(model.loras) or None,
        "embeddings": list(model.embeddings) or None,
        "versions": versions(),
        **request.extra,  # what the request was made from: a dynamic prompt's template
    }


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or is_allocation_failure(exc)


def free_memory(device: Any) -> None:
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


@dataclass
class _Run:
    """State that outlives one batch: memory fallbacks stick for the rest of the run."""

    upcast_vae: bool = False
    fallbacks: list[str] = field(default_factory=list)


def _denoise(model: LoadedModel, call: dict[str, Any], run: _Run) -> tuple[Any, tuple[str, ...]]:
    """One pipeline call to latents; on OOM either stop with exit 4 or, with --oom-retry, retry with VAE
    tiling and then model offload."""
    notes: list[str] = []
    remaining = ["vae tiling", "model offload"] if model.memory.oom_retry else []
    while True:
        try:
            return model.pipe(**call).images, tuple(notes)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            free_memory(model.device)
            if not remaining:
                raise out_of_memory(exc, str(model.device)) or OutOfMemory("out of memory") from exc
            fallback = remaining.pop(0)
            if fallback == "vae tiling":
                model.pipe.vae.enable_tiling()
            elif model.memory.offload == "none" and model.device.type == "cuda":
                model.pipe.enable_model_cpu_offload(device=model.device)
            run.fallbacks.append(fallback)
            notes.append(f"out of memory; retrying with {fallback}")


HIRES_FAMILIES_MESSAGE = "hires fix is for SD 1.x/2.x and SDXL"


def check_hires_family(family: Family) -> None:
    if family not in (SD, SDXL):
        raise UsageError(f"{HIRES_FAMILIES_MESSAGE}; this model is {family.label}")


def hires_model(model: LoadedModel) -> LoadedModel:
    """The img2img pipeline of the hires fix's second pass: the same weights (from_pipe), built once a run."""
    check_hires_family(of_pipeline(model.pipe))
    return pipelines.for_task(model, "img2img")


def hires_upscaler(model: LoadedModel, request: GenerationRequest) -> LoadedUpscaler | None:
    """The hires fix's upscaler model (None for latent and Lanczos), on the model's device, once a run."""
    found = upscale.parse_hires_upscaler(request.hires_upscaler)
    if found is None or found.kind == upscale.LANCZOS:
        return None
    return upscaling.load(found, str(model.device), model.request.dtype)


def hires_upscale_options(request: GenerationRequest) -> ModelOptions:
    """What a diffusers upscaler is asked for in the hires fix: the image's own prompt guides the
    text-conditioned x4 model, at `sdcli upscale`'s defaults; each image's seed is its own."""
    return ModelOptions(prompt=request.prompt, negative=request.negative)


def hires_record(request: GenerationRequest, upscaler: LoadedUpscaler | None = None) -> dict[str, Any]:
    if request.hires_scale is None:
        return {}  # records without the hires fix stay as they were
    found = upscale.parse_hires_upscaler(request.hires_upscaler)
    fields: dict[str, Any] = {
        "hires_scale": request.hires_scale,
        "hires_steps": request.hires_steps,
        "hires_strength": request.hires_strength,
        # A model by name, never its path: --from looks for it by that name (images/upscale.find_by_name).
        "hires_upscaler": upscale.LATENT if found is None else found.name,
    }
    if upscaler is not None:
        fields["hires_upscaler"] = upscaler.upscaler.name
        model = upscaling.record(upscaler, hires_upscale_options(request))
        # The prompt and the seeds are the image's own: not repeated.
        fields["hires_upscaler_model"] = {
            key: value for key, value in model.items() if key not in ("prompt", "negative", "seed")
        }
    return fields


def _hires_pass(
    hires: LoadedModel,
    request: GenerationRequest,
    latents: Any,
    size: tuple[int, int],
    arguments: dict[str, Any],
    run: _Run,
    seeds: list[int],
    upscaler: LoadedUpscaler | None = None,
) -> tuple[Any, tuple[str, ...]]:
    """A1111's hires fix: upscale the first pass (its latents; or its decoded pixels, with Lanczos or an
    upscaler model, brought to the exact size as `sdcli upscale` does), then img2img at the final size with
    the same prompt and a generator from the same seed."""
    import torch

    final_w, final_h = size
    if request.hires_upscaler == upscale.LATENT:
        scale = hires.pipe.vae_scale_factor
        image: Any = torch.nn.functional.interpolate(
            latents, size=(final_h // scale, final_w // scale), mode="nearest"
        )
    else:
        options = hires_upscale_options(request)
        image = []
        for seed, decoded in zip(seeds, decoding.decode_pil(hires.pipe, latents), strict=True):
            once = None
            if upscaler is not None:
                seeded = replace(options, seed=seed)
                once = functools.partial(upscaling.upscale_once, upscaler, options=seeded)
            image.append(upscale.to_size(decoded, size, once)[0])
    steps, strength = request.hires_schedule()
    call = {
        **arguments,
        "image": image,
        "num_inference_steps": steps,
        "strength": strength,
        "output_type": "latent",
    }
    for size_key in ("width", "height"):  # img2img takes its size from the image
        call.pop(size_key, None)
    return _denoise(hires, call, run)


def refiner_record(model: LoadedModel, switch: float) -> dict[str, Any]:
    assert model.refiner is not None
    source = model.refiner.source
    return {"refiner": source.name, "refiner_hash": source.model_hash, "refiner_switch": switch}


def _refine(
    refiner: LoadedModel,
    latents: Any,
    start: float,
    texts: dict[str, Any],
    arguments: dict[str, Any],
    run: _Run,
) -> tuple[Any, tuple[str, ...]]:
    """SDXL's ensemble of experts: the refiner takes the base's latents, still noisy, at the same point of
    the same schedule (`denoising_start`), and runs the remaining steps."""
    kept = ("num_inference_steps", "guidance_scale", "generator", "callback_on_step_end")
    call = {
        **{key: arguments[key] for key in kept if key in arguments},
        **texts,
        "image": latents,
        "denoising_start": start,
        "output_type": "latent",
    }
    return _denoise(refiner, call, run)


def generate(
    model: LoadedModel,
    request: GenerationRequest,
    *,
    inputs: dict[str, Any] | None = None,
    on_step: StepCallback | None = None,
    hires: LoadedModel | None = None,
    upscaler: LoadedUpscaler | None = None,
) -> Iterator[GeneratedImage]:
    """Yield each image as soon as its batch is decoded; image i has seed `request.seed + i`.
    With `request.hires_scale`, `hires` (`hires_model(model)`) runs the second pass, after `upscaler`
    (`hires_upscaler(model, request)`) where --hires-upscaler names a model."""
    pipe = model.pipe
    family = of_pipeline(pipe)
    request = family_runs.with_defaults(family, pipe, request)
    native_w, native_h = native_size(pipe)
    width, height = request.width or native_w, request.height or native_h
    family_runs.check_request(family, pipe, request, width, height)
    if request.hires_scale is not None:
        check_hires_family(family)
        request.check_hires(width, height)  # the final size, now that the native size is known
        hires = hires or hires_model(model)
        upscaler = upscaler or hires_upscaler(model, request)
    refiner, switch = model.refiner, request.refiner_switch or REFINER_SWITCH
    denoising = request.refiner_denoising()
    if refiner is not None:
        pipelines.check_refinable(type(pipe).__name__, model.source.name)
    final_w, final_h = request.hires_size(width, height) if hires is not None else (width, height)
    record = {
        **base_record(model, request, width, height),
        **family_runs.record_fields(family),
        **hires_record(request, upscaler),
        **(refiner_record(model, switch) if refiner is not None else {}),
    }
    if model.request.quantize:  # only when used: SD records stay as they were
        record["quantize"] = model.request.quantize
    call = dict(
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        output_type=family_runs.output_type(family),
        **(inputs or {}),
    )
    # Image-to-image pipelines take their size from the input image and have no width/height parameters
    # (the values would vanish into **kwargs); the caller sizes the image to the request beforehand.
    if "width" in inspect.signature(pipe.__call__).parameters:
        call.update(width=width, height=height)
    if request.strength is not None:
        call["strength"] = request.strength
    if model.controlnets:
        record["controlnets"] = _controls(model, call, width, height)
    if model.ip_adapters:
        from sdcli.images import ip_images

        ip_args, ip_records = ip_images.pipeline_args(model.request.ip_adapters)
        call.update(ip_args)
        record["ip_adapters"] = [
            {**found, "image": image} for found, image in zip(model.ip_adapters, ip_records, strict=True)
        ]
    if refiner is not None:
        call["denoising_end"] = denoising
    if on_step is not None:

        def step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            on_step(step + 1, int(getattr(pipe, "num_timesteps", 0) or request.steps))
            return kwargs

        call["callback_on_step_end"] = step_end

    # Encoded once for the whole run; None: the pipeline encodes the prompt strings itself.
    conditioning = (
        prompts.encode(
            pipe,
            request.prompt,
            request.negative,
            weighting=request.weighting,
            clip_skip=request.clip_skip,
            long=request.long_prompts,
        )
        if family.clip_prompts
        else None
    )
    # The refiner encodes the prompt with its own (OpenCLIP only) encoder, with the same weighting.
    refiner_conditioning = (
        prompts.encode(
            refiner.pipe,
            request.prompt,
            request.negative,
            weighting=request.weighting,
            clip_skip=request.clip_skip,
            long=request.long_prompts,
        )
        if refiner is not None
        else None
    )
    family_notes = family_runs.prompt_notes(family, request)
    run = _Run()
    noise_device = "cpu" if model.request.rng == "cpu" else model.device
    seeds = request.seeds
    for start in range(0, len(seeds), request.batch_size):
        chunk = seeds[start : start + request.batch_size]
        began = time.perf_counter()
        texts = (
            conditioning.batch(len(chunk))
            if conditioning
            else family_runs.prompt_texts(family, request, len(chunk))
        )
        arguments = {**call, **texts, "generator": generators(chunk, noise_device)}
        with family_runs.guided(family, pipe, request.guidance):
            latents, notes = _denoise(model, family_runs.call_arguments(family, pipe, arguments), run)
        decoder = pipe
        if hires is not None and request.hires_scale is not None:
            arguments["generator"] = generators(chunk, noise_device)  # the seed's own noise again
            latents, hires_notes = _hires_pass(
                hires, request, latents, (final_w, final_h), arguments, run, chunk, upscaler
            )
            notes, decoder = (*notes, *hires_notes), hires.pipe
        if refiner is not None:
            refiner_texts = (
                refiner_conditioning.batch(len(chunk))
                if refiner_conditioning
                else family_runs.prompt_texts(family, request, len(chunk))
            )
            arguments["generator"] = generators(
                chunk, noise_device
            )  # as the hires pass: the seed's own noise
            latents, refiner_notes = _refine(refiner, latents, denoising, refiner_texts, arguments, run)
            notes, decoder = (*notes, *refiner_notes), refiner.pipe
        if start == 0 and conditioning:
            notes = (*conditioning.notes, *notes)
        if start == 0:
            notes = (*family_notes, *notes)
        decoded = family_runs.decode(family, decoder, latents, final_w, final_h, upcast=run.upcast_vae)
        if decoded.vae_upcast and not run.upcast_vae:
            run.upcast_vae = True
            notes += (
                "the VAE produced NaN in half precision; decoded in fp32 (kept for the rest of the run)",
            )
        seconds = (time.perf_counter() - began) / len(chunk)
        size, size_notes = family_runs.actual_size(decoded, final_w, final_h)
        extra: dict[str, Any] = {
            "vae_fp32_retry": run.upcast_vae or None,
            "oom_fallbacks": list(run.fallbacks) or None,
            **size,
        }
        notes = (*notes, *size_notes) if start == 0 else notes
        for offset, (seed, pixels, flagged) in enumerate(
            zip(chunk, decoded.pixels, decoded.flagged, strict=True)
        ):
            index = request.first_index + start + offset
            yield GeneratedImage(
                image=to_pil(pixels),
                seed=seed,
                index=index,
                record={
                    **record,
                    **extra,
                    "seed": seed,
                    "index": index,
                    "timings": timings(model.device, seconds),
                },
                seconds=seconds,
                flagged=flagged,
                notes=notes if offset == 0 else (),
            )
        # Dropping the batch's tensors is enough for memory to stay flat (measured over 50 images);
        # a gc.collect() here cost 0.4 s per image.
        del latents, decoded


def _controls(model: LoadedModel, call: dict[str, Any], width: int, height: int) -> list[dict[str, Any]]:
    """Adds the control maps, at the output size, to the pipeline call; returns the `controlnets` records."""
    from sdcli.images import control_images

    specs, preprocess = model.request.controlnets, model.request.control_preprocess
    key = "control_image" if "control_image" in inspect.signature(model.pipe.__call__).parameters else "image"
    args, images = control_images.pipeline_args(
        specs, preprocess, width, height, image_key=key, depth=model.depth
    )
    call.update(args)
    # The estimator is part of how the map was made: A1111 names it as the unit's Module.
    made = {"depth_model": model.depth.name, "module": model.depth.module} if preprocess == "depth" else {}
    return [
        {**found, "preprocess": preprocess, **made, "image": image}
        for found, image in zip(model.controlnets, images, strict=True)
    ]


def timings(device: Any, seconds: float) -> dict[str, Any]:
    found: dict[str, Any] = {"seconds": round(seconds, 3)}
    if device.type == "cuda":
        import torch

        found["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    return found


def to_pil(pixels: Any) -> Any:
    from PIL import Image

    return Image.fromarray((pixels * 255).round().clip(0, 255).astype("uint8"))
