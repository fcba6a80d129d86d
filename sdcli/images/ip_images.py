"""Reference images for `--ip-adapter`: read with the defensive input reader. They go to the pipeline as
they are: its CLIP image processor resizes and crops them to the encoder's input, as in plain diffusers."""

from __future__ import annotations

from typing import Any

from sdcli.core.ip_adapter_specs import IPAdapterSpec
from sdcli.images import inputs


def check(specs: tuple[IPAdapterSpec, ...]) -> None:
    """Before the model loads: every reference image decodes."""
    for spec in specs:
        inputs.read_image(spec.image)


def pipeline_args(specs: tuple[IPAdapterSpec, ...]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`ip_adapter_image` (one image for one adapter, a list for several) and each image's record."""
    read = [inputs.read_image(spec.image) for spec in specs]
    images = [item.image for item in read]
    return {"ip_adapter_image": images[0] if len(images) == 1 else images}, [item.record for item in read]
