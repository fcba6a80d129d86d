"""Latents -> checked 8-bit images: VAE decode with A1111's fp32 retry on NaN, then the safety checker.

sdcli decodes itself (the pipeline returns latents) so that a half-precision VAE overflow can be retried in
fp32 without denoising again, and so that no black or NaN image is ever passed off as a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdcli.errors import CheckFailed


@dataclass(frozen=True)
class Decoded:
    pixels: list[Any]  # float arrays in [0, 1], HWC
    flagged: list[bool]  # the safety checker's verdict per image
    vae_upcast: bool  # decoding needed the fp32 retry


def _unscale(vae: Any, latents: Any) -> Any:
    import torch

    config = vae.config
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, len(mean), 1, 1)
        mean_t = torch.tensor(mean).view(shape).to(latents.device, latents.dtype)
        std_t = torch.tensor(std).view(shape).to(latents.device, latents.dtype)
        return latents * std_t / config.scaling_factor + mean_t
    # SD3 and FLUX.1 VAEs centre their latents as well as scale them; SD/SDXL VAEs have no shift.
    shift = getattr(config, "shift_factor", None)
    if shift is not None:
        return latents / config.scaling_factor + shift
    return latents / config.scaling_factor


def _vae_decode(vae: Any, latents: Any) -> Any:
    import torch

    dtype = next(vae.parameters()).dtype
    with torch.no_grad():  # not inference_mode: the safety checker edits the tensor in place
        return vae.decode(_unscale(vae, latents.to(dtype)), return_dict=False)[0]


def _finite(images: Any) -> bool:
    import torch

    return bool(torch.isfinite(images).all())


def decode(pipe: Any, latents: Any, *, upcast: bool = False) -> Decoded:
    """Decode in the VAE's dtype; on NaN/Inf in half precision retry once in fp32. The VAE then stays in
    fp32, so the rest of the batch skips the failed attempt (as it does for VAEs marked `force_upcast`)."""
    import torch

    vae = pipe.vae
    needs_fp32 = upcast or (
        next(vae.parameters()).dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    )
    if needs_fp32:
        vae.to(dtype=torch.float32)
    images = _vae_decode(vae, latents)
    retried = False
    if not _finite(images) and next(vae.parameters()).dtype != torch.float32:
        vae.to(dtype=torch.float32)
        images = _vae_decode(vae, latents)
        retried = True
    if not _finite(images):
        raise CheckFailed(
            "the VAE decoded NaN/Inf values, even in fp32",
            hint="run with --dtype fp32; if that fails too the model weights are broken",
        )
    flagged = [False] * images.shape[0]
    if getattr(pipe, "safety_checker", None) is not None and hasattr(pipe, "run_safety_checker"):
        images, nsfw = pipe.run_safety_checker(images, images.device, pipe.safety_checker.dtype)
        flagged = [bool(f) for f in (nsfw or flagged)]
    # The checker blanks what it flags; denormalizing would turn that black into grey.
    pixels = pipe.image_processor.postprocess(
        images.float(), output_type="np", do_denormalize=[not f for f in flagged]
    )
    return Decoded(pixels=list(pixels), flagged=flagged, vae_upcast=retried)


def decode_pil(pipe: Any, latents: Any) -> list[Any]:
    """Latents -> PIL images as the pipeline's own `output_type="pil"` makes them (no safety checker): the
    hires fix's Lanczos upscaler works on these."""
    images = _vae_decode(pipe.vae, latents)
    return list(pipe.image_processor.postprocess(images.float(), output_type="pil"))
