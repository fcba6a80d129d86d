"""Applies MemoryOptions to a loaded pipeline, dropping (with one warning each) what the device cannot use."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sdcli.core.requests import MemoryOptions
from sdcli.errors import ModelUnavailable


def effective(options: MemoryOptions, device: Any) -> tuple[MemoryOptions, list[str]]:
    """The options that make sense on `device`, and a warning for each one dropped."""
    warnings = []
    if options.offload != "none" and device.type not in ("cuda", "xpu"):
        warnings.append(f"--offload {options.offload} needs a GPU; ignored on {device.type}")
        options = replace(options, offload="none")
    return options, warnings


def apply(pipe: Any, options: MemoryOptions, device: Any) -> None:
    import torch

    if options.tiny_vae:
        pipe.vae = load_tiny_vae(options.tiny_vae, dtype=pipe.vae.dtype).to(device)
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    if options.vae_slicing:
        pipe.vae.enable_slicing()
    if options.attention_slicing:
        pipe.enable_attention_slicing()
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if options.channels_last and denoiser is not None:
        denoiser.to(memory_format=torch.channels_last)
    if options.compile and denoiser is not None:
        # Regional compilation of the repeated blocks compiles several times faster than the whole model.
        if hasattr(denoiser, "compile_repeated_blocks") and getattr(denoiser, "_repeated_blocks", None):
            denoiser.compile_repeated_blocks(fullgraph=True)
        else:
            denoiser.compile()


def load_tiny_vae(location: str, dtype: Any) -> Any:
    from pathlib import Path

    from diffusers import AutoencoderTiny

    try:
        if Path(location).is_dir():
            return AutoencoderTiny.from_pretrained(location, dtype=dtype, use_safetensors=True)
        return AutoencoderTiny.from_pretrained(
            location, dtype=dtype, use_safetensors=True, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"--tiny-vae {location}: no tiny autoencoder found locally",
            hint=f"run `sdcli download {location}` first (madebyollin/taesd; taesdxl for SDXL)",
        ) from exc
