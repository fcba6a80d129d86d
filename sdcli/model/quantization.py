"""`--quantize`: load the big components in 4 or 8 bits through diffusers' PipelineQuantizationConfig.

The backends are optional packages (bitsandbytes, torchao). Whether one is installed is checked when the
request is validated, before anything loads, so a missing one is exit 2 naming the pip line, not a
traceback from deep inside `from_pretrained`. Only the standard library at import time.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from sdcli.errors import UsageError


@dataclass(frozen=True)
class Scheme:
    backend: str  # PipelineQuantizationConfig's quant_backend
    package: str  # the import name that backend needs
    extra: str  # sdcli's pyproject extra that installs it
    kwargs: tuple[tuple[str, Any], ...] = ()


SCHEMES = {
    "bnb-4bit": Scheme(
        "bitsandbytes_4bit",
        "bitsandbytes",
        "bitsandbytes",
        (("load_in_4bit", True), ("bnb_4bit_quant_type", "nf4")),
    ),
    "bnb-8bit": Scheme("bitsandbytes_8bit", "bitsandbytes", "bitsandbytes", (("load_in_8bit", True),)),
    "torchao-int8": Scheme("torchao", "torchao", "torchao", (("quant_type", "int8wo"),)),
    "torchao-int4": Scheme("torchao", "torchao", "torchao", (("quant_type", "int4wo"),)),
}
# The components worth quantizing: the denoiser and, where there is one, T5 (FLUX.1's text_encoder_2 and
# SD3's text_encoder_3 are larger than everything else but the transformer). CLIP and the VAE stay as they
# are: small, and the VAE's precision is what the fp32 retry protects.
COMPONENTS = ("transformer", "unet", "text_encoder_2", "text_encoder_3")
T5_CLASSES = ("T5EncoderModel", "UMT5EncoderModel")


def installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def validated(name: str | None) -> str | None:
    """The scheme name, after checking that it is known and its package is installed."""
    if name is None or name == "none":
        return None
    scheme = SCHEMES.get(name)
    if scheme is None:
        raise UsageError(f"--quantize {name!r} is not one of none, {', '.join(SCHEMES)}")
    if not installed(scheme.package):
        raise UsageError(
            f"--quantize {name} needs the {scheme.package} package, which is not installed",
            hint=f"pip install 'sdcli[{scheme.extra}]'  (or: pip install {scheme.package})",
        )
    return name


def components(model_index: dict[str, Any]) -> list[str]:
    """Which of the pipeline's components to quantize: the denoiser, and a T5 text encoder."""
    found = []
    for name in COMPONENTS:
        value = model_index.get(name)
        if not isinstance(value, (list, tuple)) or len(value) != 2 or value[1] is None:
            continue
        if name.startswith("text_encoder") and value[1] not in T5_CLASSES:
            continue
        found.append(name)
    return found


def pipeline_config(name: str, model_index: dict[str, Any], dtype: Any) -> Any:
    """diffusers' PipelineQuantizationConfig for a validated scheme name."""
    from diffusers import PipelineQuantizationConfig

    scheme = SCHEMES[name]
    kwargs = dict(scheme.kwargs)
    if scheme.backend == "bitsandbytes_4bit":
        kwargs["bnb_4bit_compute_dtype"] = dtype
    return PipelineQuantizationConfig(
        quant_backend=scheme.backend, quant_kwargs=kwargs, components_to_quantize=components(model_index)
    )
