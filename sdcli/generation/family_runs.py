"""Model families: what sdcli does itself and what it leaves to the pipeline, per pipeline class.

sdcli's own prompt encoder (`sdcli.generation.prompts`) and VAE decode (`sdcli.generation.decoding`) were
written for the CLIP + UNet layout of SD 1.x/2.x and SDXL. Other families differ where that matters:

- FLUX.1: CLIP (pooled) + T5 (per token), latents packed 2x2 into a sequence, a VAE with `shift_factor`,
  and guidance distilled into the transformer (`guidance_scale` is Forge's "Distilled CFG Scale"; schnell
  has none at all). No negative prompt.
- SD3/3.5: two CLIP encoders and T5, plain latents, a VAE with `shift_factor`, real CFG with a negative.
- anything else whose `__call__` takes a prompt ("generic"): the pipeline encodes and decodes itself, and
  sdcli checks what comes out as it checks its own decode.

The family is decided by the pipeline's class name (what `model_index.json` names), never by guessing from
weights. SD and SDXL keep the path they always had: nothing here changes their pixels or their records.
Only the standard library at import time; torch comes in inside functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sdcli.errors import CheckFailed, UsageError
from sdcli.model.families import FLUX, FLUX_SCHNELL, GENERIC, Family, call_parameters


def _call_default(pipe: Any, name: str) -> Any:
    parameter = call_parameters(pipe).get(name)
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


# -- requests ------------------------------------------------------------------------------------------------


def with_defaults(family: Family, pipe: Any, request: Any) -> Any:
    """Steps and guidance the user left at sdcli's SD defaults become the family's: FLUX.1-dev 28 steps and
    distilled guidance 3.5 (diffusers' defaults), schnell 4 steps and no guidance, SD3 28 and 7."""
    if family.sdcli_native:
        return request
    changes: dict[str, Any] = {}
    if "steps" in request.defaulted:
        steps = family.steps or _call_default(pipe, "num_inference_steps")
        if isinstance(steps, int) and steps >= 1:
            changes["steps"] = steps
    if "guidance" in request.defaulted:
        guidance = family.guidance_default
        if guidance is None:
            guidance = _call_default(pipe, cfg_parameter(family, pipe))
        if guidance is None and (found := guiders(family, pipe)):
            guidance = getattr(next(iter(found.values())), "guidance_scale", None)
        if isinstance(guidance, (int, float)) and guidance >= 0:
            changes["guidance"] = float(guidance)
    return replace(request, **changes) if changes else request


def cfg_parameter(family: Family, pipe: Any) -> str:
    """The `__call__` parameter that is classifier-free guidance, which sdcli's --guidance sets.

    Qwen-Image's is `true_cfg_scale` (4.0, applied when there is a negative prompt): its `guidance_scale`
    defaults to None and feeds only a guidance-distilled transformer, so setting it would change nothing
    and record a CFG that was never applied."""
    if family is GENERIC:
        parameters = call_parameters(pipe)
        guidance = parameters.get("guidance_scale")
        if "true_cfg_scale" in parameters and (guidance is None or guidance.default is None):
            return "true_cfg_scale"
    return "guidance_scale"


def guiders(family: Family, pipe: Any) -> dict[str, Any]:
    """The guider components (diffusers' guiders API) that hold the CFG of a pipeline whose `__call__`
    takes no guidance_scale, HunyuanImage's `guider` and `ocr_guider`, by component name, `guider` first;
    empty for any other pipeline."""
    if family is not GENERIC or "guidance_scale" in call_parameters(pipe):
        return {}
    components = getattr(pipe, "components", None)
    if not isinstance(components, dict):
        return {}
    found = {
        name: component
        for name, component in components.items()
        if callable(getattr(component, "new", None))
        and isinstance(getattr(component, "guidance_scale", None), float)
    }
    return dict(sorted(found.items(), key=lambda item: item[0] != "guider"))


@contextmanager
def guided(family: Family, pipe: Any, guidance: float) -> Iterator[None]:
    """--guidance on the pipeline's guiders for one call, as a plain script's `pipe.guider =
    pipe.guider.new(guidance_scale=...)` does; put back afterwards, since a loaded pipeline outlives the
    request (a warm worker's next one would otherwise record this scale as the model's default)."""
    found = guiders(family, pipe)
    for name, guider in found.items():
        setattr(pipe, name, guider.new(guidance_scale=guidance))
    try:
        yield
    finally:
        for name, guider in found.items():
            setattr(pipe, name, guider)


def check_request(family: Family, pipe: Any, request: Any, width: int, height: int) -> None:
    """What the family cannot do, refused before any denoising."""
    if request.negative and (not family.negative or "negative_prompt" not in call_parameters(pipe)):
        # FLUX.1's hint would mislead elsewhere: FLUX.2 klein guides away from "" itself, not from nothing.
        hint = (
            f"{type(pipe).__name__} has no negative_prompt parameter: describe what you want instead, "
            "and drop --negative"
            if family is GENERIC
            else "FLUX.1 is guidance-distilled: describe what you want instead, and drop --negative"
        )
        raise UsageError(f"{family.label} takes no negative prompt; --negative would be ignored", hint=hint)
    multiple = _size_multiple(family, pipe)
    if width % multiple or height % multiple:
        raise UsageError(
            f"{family.label} needs a width and height that are multiples of {multiple}, got {width}x{height}",
            hint=f"use e.g. -W {_round_down(width, multiple)} -H {_round_down(height, multiple)}",
        )


def _round_down(value: int, multiple: int) -> int:
    return max(value - value % multiple, multiple)


def _size_multiple(family: Family, pipe: Any) -> int:
    scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    if family in (FLUX, FLUX_SCHNELL):
        return scale * 2  # latents are packed 2x2
    patch = getattr(getattr(getattr(pipe, "transformer", None), "config", None), "patch_size", 1)
    return scale * (patch if isinstance(patch, int) else 1)


def prompt_notes(family: Family, request: Any) -> tuple[str, ...]:
    """One warning each when A1111 syntax or --clip-skip would be lost on the family's own encoders."""
    from sdcli.generation import prompts

    if family.clip_prompts:
        return ()
    notes = []
    if request.clip_skip > 1:
        notes.append(f"{family.label} encodes prompts with its own text encoders: --clip-skip is not applied")
    texts = [t for t in (request.prompt, request.negative) if t]
    weighted = any(
        len(prompts.parse_attention(t)) > 1 or prompts.parse_attention(t)[0][1] != 1.0 for t in texts
    )
    if weighted and request.weighting == "a1111":
        notes.append(
            f"{family.label} encodes prompts with its own text encoders: A1111 weighting such as (word:1.2) "
            "and BREAK is read as plain text (use --weighting none to silence this)"
        )
    return tuple(notes)


def prompt_texts(family: Family, request: Any, n: int) -> dict[str, Any]:
    """Prompt strings for a pipeline that encodes them; a negative only when there is one, so that the call
    is exactly the one a plain diffusers script makes."""
    texts: dict[str, Any] = {"prompt": [request.prompt] * n}
    if request.negative or family.sdcli_native:
        texts["negative_prompt"] = [request.negative] * n
    return texts


def call_arguments(family: Family, pipe: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """A generic pipeline gets only the arguments its `__call__` names (one without guidance_scale or a
    step callback would fail on them), and --guidance under the name of its CFG (`cfg_parameter`); the
    known families get every one, as before."""
    if family is not GENERIC:
        return arguments
    if "guidance_scale" in arguments and cfg_parameter(family, pipe) == "true_cfg_scale":
        arguments = dict(arguments)
        arguments["true_cfg_scale"] = arguments.pop("guidance_scale")
    parameters = call_parameters(pipe)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return arguments
    return {k: v for k, v in arguments.items() if k in parameters}


def record_fields(family: Family) -> dict[str, Any]:
    """What the metadata adds for this family; nothing for SD/SDXL, whose records stay as they were."""
    if family.sdcli_native:
        return {}
    return {"family": family.name, "guidance_kind": family.guidance}


# -- decoding ------------------------------------------------------------------------------------------------


def output_type(family: Family) -> str:
    """A pipeline that decodes itself is asked for "np": every pipeline's "np" is HWC in [0, 1] (the floats
    its "pil" rounds), while "pt" is not uniform: Kandinsky 3 returns its MoVQ's raw [-1, 1] output."""
    return "latent" if family.own_decode else "np"


def vae_latents(family: Family, pipe: Any, latents: Any, width: int, height: int) -> Any:
    """The pipeline's latent output as the VAE's input layout: FLUX.1's packed sequence unpacked to BCHW."""
    if family in (FLUX, FLUX_SCHNELL) and latents.ndim == 3:
        return type(pipe)._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    return latents


def decode(family: Family, pipe: Any, output: Any, width: int, height: int, *, upcast: bool) -> Any:
    """`decoding.Decoded` for the pipeline's output: sdcli's own decode (with its fp32 retry) where it knows
    the latent layout, else the pipeline's decoded images under the same finite check."""
    from sdcli.generation import decoding

    if family.own_decode:
        return decoding.decode(pipe, vae_latents(family, pipe, output, width, height), upcast=upcast)
    return checked_images(output)


def actual_size(decoded: Any, width: int, height: int) -> tuple[dict[str, int], tuple[str, ...]]:
    """The size the images came out at, for the record, when a pipeline chose another than was asked
    (FluxKontextPipeline resizes to about a megapixel whatever it is told); nothing when they agree."""
    if not decoded.pixels:
        return {}, ()
    got_h, got_w = decoded.pixels[0].shape[:2]
    if (got_w, got_h) == (width, height):
        return {}, ()
    note = f"the pipeline made {got_w}x{got_h} images, not the {width}x{height} asked for; recorded as made"
    return {"width": int(got_w), "height": int(got_h)}, (note,)


def checked_images(images: Any) -> Any:
    """Images a pipeline decoded itself (`output_type="np"`: BHWC in [0, 1]; a BCHW tensor is read as
    `"pt"`'s layout) -> `decoding.Decoded`.

    Their VAE ran inside the pipeline, so a NaN cannot be retried in fp32 without denoising again: it is
    refused with the same error and exit code as sdcli's own decode."""
    import numpy as np
    import torch

    from sdcli.generation import decoding

    if isinstance(images, torch.Tensor):
        images = images.float().permute(0, 2, 3, 1).cpu().numpy()
    pixels = np.stack([np.asarray(i, dtype=np.float32) for i in images])
    if not bool(np.isfinite(pixels).all()):
        raise CheckFailed(
            "the pipeline decoded NaN/Inf values",
            hint="run with --dtype fp32; if that fails too the model weights are broken",
        )
    pixels = pixels.clip(0, 1)
    return decoding.Decoded(pixels=list(pixels), flagged=[False] * len(pixels), vae_upcast=False)
