"""Upscaling through a model: diffusers' upscale pipelines (x4, x2 latent), and ESRGAN-family weight files
(Real-ESRGAN, 4x-UltraSharp, ...) through spandrel, the optional `upscale` extra.

Weight files are read as tensors only (safetensors, or `torch.load(weights_only=True)`): a `.pth` is a pickle,
and unpickling one that holds code would run it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from sdcli.core.requests import ModelRequest
from sdcli.errors import UsageError, first_line
from sdcli.images import upscale
from sdcli.images.upscale import Upscaler

DEFAULT_STEPS = 20  # the x4 pipeline's own default is 75: minutes per image on most GPUs for little gain
DEFAULT_NOISE_LEVEL = 20  # the x4 pipeline's default


@dataclass(frozen=True)
class ModelOptions:
    """What a diffusers upscale pipeline is asked for; ESRGAN-family models take none of it."""

    prompt: str | None = None  # None: the source image's own prompt, else none
    negative: str = ""
    steps: int = DEFAULT_STEPS
    guidance: float | None = None  # None: the pipeline's own (9.0)
    noise_level: int = DEFAULT_NOISE_LEVEL  # x4 only
    seed: int | None = None  # None: drawn at random when the run is planned, and recorded

    def validated(self) -> ModelOptions:
        if not 1 <= self.steps <= 10_000:
            raise UsageError(f"--steps {self.steps} is not between 1 and 10000")
        if not 0 <= self.noise_level <= 350:  # the x4 pipeline's max_noise_level
            raise UsageError(f"--noise-level {self.noise_level} is not between 0 and 350")
        return self


@dataclass(frozen=True)
class LoadedUpscaler:
    upscaler: Upscaler  # its scale now known
    model: Any  # a diffusers pipeline or a spandrel ImageModelDescriptor
    device: Any
    dtype: Any


def load(upscaler: Upscaler, device: str = "auto", dtype: str = "auto") -> LoadedUpscaler:
    from sdcli.model import runtime

    torch_device = runtime.resolve_device(device)
    torch_dtype, _ = runtime.resolve_dtype(dtype, torch_device)
    if upscaler.kind == "esrgan":
        return _load_esrgan(upscaler, torch_device, torch_dtype)
    from sdcli.model import pipelines

    source = pipelines.locate(ModelRequest(upscaler.value, device=device, dtype=dtype).validated())
    cls = upscale.check_pipeline_class(source.pipeline_class, source.name)  # a Hub id's class shows only now
    pipe = pipelines.load_pipeline(source, torch_device, torch_dtype)
    found = replace(upscaler, name=source.name, scale=upscale.PIPELINES[cls], pipeline_class=cls)
    return LoadedUpscaler(found, pipe, torch_device, torch_dtype)


def read_weights(path: Path) -> dict[str, Any]:
    """Tensors only, whatever the file claims to be."""
    import torch

    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path), device="cpu"))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UsageError(
            f"{path.name} holds more than tensors: refused ({first_line(exc)[:120]})",
            hint="sdcli never unpickles code; use the model's .safetensors file",
        ) from None
    except Exception as exc:  # a damaged or foreign file fails anywhere inside the readers
        raise UsageError(f"{path.name}: not a readable weights file ({first_line(exc)[:120]})") from None
    if not isinstance(state, dict):
        raise UsageError(f"{path.name} holds no state dict")
    return state


def _load_esrgan(upscaler: Upscaler, device: Any, dtype: Any) -> LoadedUpscaler:
    import torch

    try:
        from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError, canonicalize_state_dict
    except ImportError:  # installed but broken (its torchvision does not match torch, say)
        raise UsageError(
            f"--upscaler {Path(upscaler.value).name}: spandrel cannot be imported", hint=upscale.UPSCALE_HINT
        ) from None
    path = Path(upscaler.value)
    state = read_weights(path)
    try:
        model = ModelLoader(device=torch.device("cpu")).load_from_state_dict(canonicalize_state_dict(state))
    except UnsupportedModelError:
        raise UsageError(f"{path.name}: not a model architecture spandrel knows") from None
    except Exception as exc:
        raise UsageError(f"{path.name}: cannot load it as a model ({first_line(exc)[:120]})") from None
    # Inpainting (MaskedImageModelDescriptor) and other model kinds take more than one image in.
    if not isinstance(model, ImageModelDescriptor) or model.input_channels != 3 or model.output_channels != 3:
        raise UsageError(f"{path.name} is a {type(model).__name__}, not an image upscaler")
    if model.scale < 1:
        raise UsageError(f"{path.name} scales by {model.scale}, not an upscaler")
    half = dtype == torch.float16 and model.supports_half
    bfloat = dtype == torch.bfloat16 and model.supports_bfloat16
    use = dtype if half or bfloat else torch.float32
    model.to(device).to(use).eval()
    found = replace(upscaler, scale=int(model.scale), pipeline_class=None)
    return LoadedUpscaler(found, model, device, use)


def upscale_once(loaded: LoadedUpscaler, image: Image.Image, options: ModelOptions) -> Image.Image:
    """One pass at the model's own factor."""
    if loaded.upscaler.kind == "esrgan":
        return _esrgan_pass(loaded, image)
    from sdcli.model import runtime

    kwargs: dict[str, Any] = {
        "prompt": options.prompt or "",
        "negative_prompt": options.negative or None,
        "image": image,
        "num_inference_steps": options.steps,
        "generator": runtime.generators([options.seed or 0])[0],
    }
    if options.guidance is not None:
        kwargs["guidance_scale"] = options.guidance
    if loaded.upscaler.pipeline_class == "StableDiffusionUpscalePipeline":
        kwargs["noise_level"] = options.noise_level
    result = loaded.model(**kwargs).images[0]
    return result if isinstance(result, Image.Image) else Image.fromarray(result)


def _esrgan_pass(loaded: LoadedUpscaler, image: Image.Image) -> Image.Image:
    import numpy as np
    import torch

    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    batch = pixels.permute(2, 0, 1).unsqueeze(0).to(loaded.device, loaded.dtype)
    with torch.inference_mode():
        # The descriptor pads the input to the architecture's size requirements and crops the result.
        out = loaded.model(batch)
    array = out.squeeze(0).permute(1, 2, 0).float().clamp(0, 1).mul(255).round().byte().cpu().numpy()
    return Image.fromarray(array, "RGB")


def record(loaded: LoadedUpscaler, options: ModelOptions) -> dict[str, Any]:
    """What an image's `upscale` entry says about the model (the command adds the sizes)."""
    found = loaded.upscaler
    entry: dict[str, Any] = {"kind": found.kind, "model_scale": found.scale}
    if found.kind == "pipeline":
        entry.update(
            pipeline=found.pipeline_class,
            prompt=options.prompt,
            negative=options.negative,
            steps=options.steps,
            guidance=options.guidance,
            seed=options.seed,
        )
        if found.pipeline_class == "StableDiffusionUpscalePipeline":
            entry["noise_level"] = options.noise_level
    return entry
