"""Model source -> loaded diffusers pipeline. The only module that builds diffusers pipelines.

The pipeline class is read from the model's own `model_index.json` and imported alone: importing one
pipeline module is about a second cheaper than `AutoPipelineForText2Image`, which pulls in every family.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sdcli.core import specs
from sdcli.core.requests import MemoryOptions, ModelRequest
from sdcli.errors import ModelUnavailable, UsageError, first_line
from sdcli.model.sources import HUB_ID, ModelSource, display_name


def locate(request: ModelRequest) -> ModelSource:
    """Find the model's files locally, downloading a Hub model's generation files when allowed."""
    path = Path(request.model).expanduser()
    if path.is_dir():
        source = ModelSource(name=display_name(request.model), folder=path)
        source.model_index  # noqa: B018 - a folder that is no pipeline fails here, before anything loads
        return source
    from sdcli.model import checkpoints, family_checkpoints

    if family_checkpoints.claims(request.model):
        return family_checkpoints.locate(request.model, config=request.config)
    if specs.is_checkpoint_name(request.model):
        return checkpoints.locate(
            request.model, config=request.config, allow_pickle=request.allow_pickle, revision=request.revision
        )
    looks_like_path = request.model.startswith((".", "/", "~")) or request.model.count("/") > 1
    if looks_like_path or not HUB_ID.match(request.model):
        raise ModelUnavailable(
            f"model {request.model!r} was not found: no such folder, and not a Hub repo id",
            hint="pass a local diffusers folder or a Hub id like stable-diffusion-v1-5/stable-diffusion-v1-5",
        )
    from sdcli.hub import fetch

    folder, commit = fetch.ensure_local(request.model, revision=request.revision, variant=request.variant)
    return ModelSource(
        name=request.model, folder=folder, repo_id=request.model, revision=request.revision, commit=commit
    )


def quiet_libraries() -> None:
    """diffusers and transformers log warnings and tqdm bars meant for notebooks; sdcli shows its own."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def pipeline_class(name: str) -> Any:
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Pipeline"):
        raise ModelUnavailable(f"model_index.json names {name!r}, which this diffusers does not provide")
    return cls


def load_pipeline(
    source: ModelSource,
    device: Any,
    dtype: Any,
    variant: str | None = None,
    *,
    offload: str = "none",
    safety_checker: bool = True,
    quantize: str | None = None,
    as_class: str | None = None,
) -> Any:
    """Load safetensors weights in `dtype`, straight onto `device` or behind offload hooks; never runs code
    from the repo. `as_class`: another pipeline class of the same components (an SDXL base as a refiner)."""
    quiet_libraries()
    cls = pipeline_class(as_class or source.pipeline_class)
    kwargs: dict[str, Any] = {}
    if not safety_checker and "safety_checker" in source.model_index:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    # Loading straight onto the GPU skips a full copy of the weights through host memory.
    # from_single_file takes no device_map.
    direct = device.type == "cuda" and device.index in (None, 0) and offload == "none"
    direct = direct and source.checkpoint is None
    if direct:
        kwargs["device_map"] = "cuda"
    if quantize is not None:
        from sdcli.model import quantization

        kwargs["quantization_config"] = quantization.pipeline_config(quantize, source.model_index, dtype)
    try:
        if source.component is not None:
            from sdcli.model import family_checkpoints

            pipe = family_checkpoints.load(cls, source, dtype, **kwargs)
        elif source.checkpoint is not None:
            from sdcli.model import checkpoints

            pipe = checkpoints.load(cls, source, dtype, **kwargs)
        else:
            pipe = cls.from_pretrained(
                source.folder, dtype=dtype, use_safetensors=True, variant=variant, **kwargs
            )
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot load {source.name}: {first_line(exc)}",
            hint="the folder must hold safetensors weights (sdcli never loads pickled .bin files)",
        ) from exc
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif not direct:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass(frozen=True)
class LoadedModel:
    pipe: Any
    source: ModelSource
    device: Any
    dtype: Any
    request: ModelRequest
    memory: MemoryOptions  # what was actually applied on this device
    notes: tuple[str, ...] = ()  # warnings for the user: options dropped, dtype fallbacks
    loras: tuple[dict[str, Any], ...] = ()  # metadata records: name, hash, scale
    embeddings: tuple[dict[str, Any], ...] = ()  # metadata records: name, hash, token
    controlnets: tuple[dict[str, Any], ...] = ()  # metadata records: name, hash, scale, start, end
    ip_adapters: tuple[dict[str, Any], ...] = ()  # metadata records: name, hash, scale
    refiner: LoadedModel | None = None  # --refiner: the img2img pipeline that runs the last steps
    depth: Any = None  # --control-preprocess depth's depth.DepthEstimator


def load_model(request: ModelRequest) -> LoadedModel:
    """Resolve device and dtype first (a missing GPU fails before any file is read), then load."""
    from sdcli.model import runtime

    with runtime.collections_paused():
        return _load_model(request.validated())


def _load_model(request: ModelRequest) -> LoadedModel:
    from sdcli.model import adapters, memory, runtime, schedulers

    device = runtime.resolve_device(request.device)
    dtype, dtype_notes = runtime.resolve_dtype(request.dtype, device)
    options, memory_notes = memory.effective(request.memory, device)
    source = locate(request)
    # The refiner is found (and its kind checked) before any weights load, the base's as well as its own.
    refiner_source = locate_refiner(request, source) if request.refiner is not None else None
    # An image's stored scheduler (--from) is rebuilt before the weights load: a bogus one fails fast.
    stored = schedulers.from_state(*request.scheduler_state) if request.scheduler_state else None
    depth_folder = None
    if request.controlnets and request.control_preprocess == "depth":  # missing offline: before the weights
        from sdcli.model import depth

        depth_folder = depth.locate(request.depth_model)
    pipe = load_pipeline(
        source,
        device,
        dtype,
        request.variant,
        offload=options.offload,
        safety_checker=request.safety_checker,
        quantize=request.quantize,
    )
    # Adapters go in before memory.apply: torch.compile must see the UNet with its LoRA layers.
    loras = adapters.load_loras(pipe, request.loras)
    embeddings = adapters.load_embeddings(pipe, request.embeddings)
    controlnet_records: list[dict[str, Any]] = []
    if request.controlnets:  # before memory.apply, so offload hooks and compile see the ControlNet too
        from sdcli.model import controlnets

        controlnet, controlnet_records = controlnets.load(request.controlnets, dtype, device)
        pipe = controlnets.attach(pipe, controlnet, source.name)
    estimator = None
    if depth_folder is not None:
        from sdcli.model import depth

        estimator = depth.load(request.depth_model, depth_folder, device)
    ip_adapter_records: list[dict[str, Any]] = []
    if request.ip_adapters:  # on the final pipeline (from_pipe above would carry it, but need not)
        from sdcli.model import ip_adapters

        if options.attention_slicing:  # its sliced processors would replace the adapter's, silently
            options = replace(options, attention_slicing=False)
            memory_notes = [*memory_notes, "attention slicing is off: it would drop the IP-Adapter"]
        ip_adapter_records = ip_adapters.load(
            pipe, request.ip_adapters, request.ip_image_encoder, source.name, dtype, device
        )
    memory.apply(pipe, options, device)
    if stored is not None:
        pipe.scheduler = stored
    elif request.scheduler or request.schedule:
        current, _ = schedulers.describe(type(pipe.scheduler).__name__, pipe.scheduler.config)
        choice = schedulers.resolve(request.scheduler or current, request.schedule)
        pipe.scheduler = schedulers.build(choice, pipe.scheduler.config)
    notes = (*dtype_notes, *memory_notes, *checkpoint_notes(source, request))
    refiner = None
    if refiner_source is not None:
        refiner = load_refiner(request, refiner_source, pipe, device, dtype, options)
    return LoadedModel(
        pipe,
        source,
        device,
        dtype,
        request,
        options,
        notes,
        tuple(loras),
        tuple(embeddings),
        tuple(controlnet_records),
        tuple(ip_adapter_records),
        refiner,
        estimator,
    )


# -- the SDXL refiner ----------------------------------------------------------------------------------------

REFINER_CLASS = "StableDiffusionXLImg2ImgPipeline"
# Base pipelines that can stop at denoising_end (inpaint would need an inpainting refiner).
REFINABLE = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")
# What --refiner accepts: SDXL's refiner, or any SDXL model run as img2img (A1111 takes any checkpoint).
REFINER_SOURCES = (REFINER_CLASS, "StableDiffusionXLPipeline")
SHARED_WITH_REFINER = ("vae", "text_encoder_2")  # the same weights in SDXL base and refiner 1.0


def check_refinable(base_class: str, name: str) -> None:
    if base_class not in REFINABLE:
        from sdcli.model.families import of_class

        raise UsageError(
            f"--refiner finishes what an SDXL model began; {name} is {of_class(base_class).label} "
            f"({base_class})",
            hint="use an SDXL --model, or drop --refiner",
        )


def check_refiner_class(refiner_class: str, name: str) -> None:
    if refiner_class not in REFINER_SOURCES:
        raise UsageError(
            f"--refiner {name} is a {refiner_class or 'pipeline of unknown kind'}, not an SDXL refiner or "
            "SDXL model",
            hint="e.g. --refiner stabilityai/stable-diffusion-xl-refiner-1.0",
        )


def locate_refiner(request: ModelRequest, base: ModelSource) -> ModelSource:
    """The refiner's files: a folder, a Hub id or a single file, found the way --model is."""
    assert request.refiner is not None
    check_refinable(base.pipeline_class, base.name)
    spec = request.refiner
    if specs.is_checkpoint_name(spec) and not Path(spec).expanduser().is_dir():
        from sdcli.model import checkpoints

        source: ModelSource = checkpoints.locate(
            spec, config=None, allow_pickle=request.allow_pickle, what="--refiner"
        )
    else:
        try:
            source = locate(replace(request, model=spec, revision=None, config=None, refiner=None))
        except ModelUnavailable as exc:
            raise ModelUnavailable(f"--refiner: {exc.message}", hint=exc.hint) from exc
    check_refiner_class(source.pipeline_class, source.name)
    return source


def same_weights(mine: Any, theirs: Any) -> bool:
    """Whether two modules hold identical tensors, so that one can serve both pipelines."""
    import torch

    if type(mine) is not type(theirs):
        return False
    a, b = mine.state_dict(), theirs.state_dict()
    if a.keys() != b.keys():
        return False
    try:
        return all(
            a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and torch.equal(a[k], b[k].to(a[k].device))
            for k in a
        )
    except (RuntimeError, NotImplementedError):  # offloaded (meta) or quantized tensors: keep both
        return False


def load_refiner(
    request: ModelRequest, source: ModelSource, base: Any, device: Any, dtype: Any, options: MemoryOptions
) -> LoadedModel:
    """The refiner as an SDXL img2img pipeline. It is read into host memory first: where its VAE or second
    text encoder is the base's (SDXL 1.0's are), the base's copy on the device serves both, as in diffusers'
    ensemble-of-experts example, and the refiner's own is dropped before anything moves to the device."""
    import torch

    from sdcli.model import memory

    pipe = load_pipeline(source, torch.device("cpu"), dtype, request.variant, as_class=REFINER_CLASS)
    for name in SHARED_WITH_REFINER:
        mine, theirs = getattr(pipe, name, None), getattr(base, name, None)
        if mine is not None and theirs is not None and same_weights(mine, theirs):
            pipe.register_modules(**{name: theirs})
    if options.tiny_vae:  # the base's VAE is already the tiny one
        pipe.register_modules(vae=base.vae)
    if options.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif options.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    memory.apply(pipe, replace(options, tiny_vae=None), device)
    # One sampler for the whole image, as in A1111: --scheduler, or the exact one --from stored, for both.
    pipe.scheduler = type(base.scheduler).from_config(base.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    refiner_request = replace(request, model=request.refiner or "", refiner=None, loras=(), embeddings=())
    return LoadedModel(pipe, source, device, dtype, refiner_request, options)


def checkpoint_notes(source: ModelSource, request: ModelRequest) -> tuple[str, ...]:
    # diffusers never builds a safety checker from a single file: say so rather than skip it silently.
    if source.checkpoint is None or not request.safety_checker:
        return ()
    if (source.model_index.get("safety_checker") or [None])[0] is None:
        return ()
    return ("single-file checkpoints carry no safety checker: images are not checked",)


# Known families convert by name: importing one pipeline class is about 2 s cheaper than the AutoPipeline
# classes, which import every family. Anything else goes through AutoPipelineFor{Image2Image,Inpainting}.
TASK_PIPELINES = {
    "img2img": {
        "StableDiffusionPipeline": "StableDiffusionImg2ImgPipeline",
        "StableDiffusionXLPipeline": "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusion3Pipeline": "StableDiffusion3Img2ImgPipeline",
        "FluxPipeline": "FluxImg2ImgPipeline",
        "StableDiffusionControlNetPipeline": "StableDiffusionControlNetImg2ImgPipeline",
        "StableDiffusionXLControlNetPipeline": "StableDiffusionXLControlNetImg2ImgPipeline",
        "FluxControlNetPipeline": "FluxControlNetImg2ImgPipeline",
        "StableDiffusionXLControlNetUnionPipeline": "StableDiffusionXLControlNetUnionImg2ImgPipeline",
    },
    "inpaint": {
        "StableDiffusionPipeline": "StableDiffusionInpaintPipeline",
        "StableDiffusionXLPipeline": "StableDiffusionXLInpaintPipeline",
        "StableDiffusionImg2ImgPipeline": "StableDiffusionInpaintPipeline",
        "StableDiffusionXLImg2ImgPipeline": "StableDiffusionXLInpaintPipeline",
        "StableDiffusion3Pipeline": "StableDiffusion3InpaintPipeline",
        "StableDiffusion3Img2ImgPipeline": "StableDiffusion3InpaintPipeline",
        "FluxPipeline": "FluxInpaintPipeline",
        "FluxImg2ImgPipeline": "FluxInpaintPipeline",
        "StableDiffusionControlNetPipeline": "StableDiffusionControlNetInpaintPipeline",
        "StableDiffusionXLControlNetPipeline": "StableDiffusionXLControlNetInpaintPipeline",
        "FluxControlNetPipeline": "FluxControlNetInpaintPipeline",
        "FluxControlNetImg2ImgPipeline": "FluxControlNetInpaintPipeline",
        "StableDiffusionXLControlNetUnionPipeline": "StableDiffusionXLControlNetUnionInpaintPipeline",
    },
}


def for_task(model: LoadedModel, task: str) -> LoadedModel:
    """The same loaded weights as an image-to-image ("img2img") or inpainting ("inpaint") pipeline.

    `from_pipe` reuses the components already on the device, so nothing is loaded twice; a model whose
    own class already does the task (an inpainting checkpoint for inpaint) is returned as it is.
    """
    pipe = model.pipe
    name = type(pipe).__name__
    table = TASK_PIPELINES[task]
    if name in table.values():
        return model
    unet = getattr(pipe, "unet", None)
    if task == "img2img" and getattr(getattr(unet, "config", None), "in_channels", 4) != 4:
        raise UsageError(
            f"{model.source.name} is an inpainting checkpoint ({name}); it cannot do plain img2img",
            hint="use `sdcli inpaint IMAGE MASK PROMPT`, or an ordinary model for img2img",
        )
    if name in table:
        cls = pipeline_class(table[name])
    else:
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        cls = AutoPipelineForImage2Image if task == "img2img" else AutoPipelineForInpainting
    try:
        converted = cls.from_pipe(pipe)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"{model.source.name} ({name}) has no {task} pipeline in diffusers: {first_line(exc)}"
        ) from exc
    converted.set_progress_bar_config(disable=True)
    return replace(model, pipe=converted)
