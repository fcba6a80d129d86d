"""Model families: which one a pipeline class is, and what that family does itself (see
`generation/family_runs.py` for how each is called and decoded)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from sdcli.errors import UsageError


@dataclass(frozen=True)
class Family:
    name: str  # "sd", "sdxl", "flux", "flux-schnell", "sd3" or "generic"
    label: str  # for messages: "FLUX.1", "SD3"
    clip_prompts: bool  # sdcli's A1111 prompt encoder applies (weighting, long prompts, clip skip)
    negative: bool  # the pipeline takes a negative prompt
    own_decode: bool  # sdcli decodes the latents itself (False: the pipeline does, sdcli checks)
    guidance: str = "cfg"  # "cfg", "distilled" (FLUX.1-dev) or "none" (FLUX.1-schnell)
    # The family's defaults, the same for its text-to-image, img2img and inpaint pipelines (diffusers' own
    # differ between them: FluxImg2ImgPipeline says guidance 7, SD3's img2img 50 steps); None: the
    # pipeline's `__call__` default.
    steps: int | None = None
    guidance_default: float | None = None

    @property
    def sdcli_native(self) -> bool:
        """SD/SDXL: the path sdcli always had, defaults and records included."""
        return self.name in ("sd", "sdxl")


SD = Family("sd", "Stable Diffusion", clip_prompts=True, negative=True, own_decode=True)


SDXL = Family("sdxl", "SDXL", clip_prompts=True, negative=True, own_decode=True)


FLUX = Family(
    "flux",
    "FLUX.1",
    clip_prompts=False,
    negative=False,
    own_decode=True,
    guidance="distilled",
    steps=28,
    guidance_default=3.5,
)


FLUX_SCHNELL = Family(
    "flux-schnell",
    "FLUX.1-schnell",
    clip_prompts=False,
    negative=False,
    own_decode=True,
    guidance="none",
    steps=4,
    guidance_default=0.0,
)


SD3 = Family("sd3", "SD3", clip_prompts=False, negative=True, own_decode=True, steps=28, guidance_default=7.0)


GENERIC = Family("generic", "this pipeline", clip_prompts=False, negative=True, own_decode=False)


# FluxPipeline, FluxImg2ImgPipeline, FluxInpaintPipeline and their FluxControlNet... variants; not
# FluxKontext, FluxFill or the other Flux pipelines, which are run as generic ones.
FLUX_TASKS = ("Pipeline", "Img2ImgPipeline", "InpaintPipeline")


def of_class(name: str) -> Family:
    """The family of a pipeline class name, as `model_index.json` spells it. FLUX.1-dev and schnell share
    classes: `of_pipeline` tells them apart by the transformer's config."""
    if name.startswith("StableDiffusionXL"):
        return SDXL
    if name.startswith("StableDiffusion3"):
        return SD3
    if name.startswith("StableDiffusion"):
        return SD
    if name.startswith("Flux") and name.removeprefix("FluxControlNet").removeprefix("Flux") in FLUX_TASKS:
        return FLUX
    return GENERIC


def of_pipeline(pipe: Any) -> Family:
    family = of_class(type(pipe).__name__)
    if family is FLUX:
        config = getattr(getattr(pipe, "transformer", None), "config", None)
        if config is not None and not getattr(config, "guidance_embeds", True):
            return FLUX_SCHNELL
    if family is GENERIC and "prompt" not in call_parameters(pipe):
        raise UsageError(
            f"{type(pipe).__name__} takes no text prompt; sdcli runs text-conditioned image pipelines"
        )
    return family


def call_parameters(pipe: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(pipe.__call__).parameters)
