"""Control images for `--controlnet`: read with the defensive input reader, turned into control maps
(`--control-preprocess`), and sized to the output."""

from __future__ import annotations

from typing import Any

from sdcli.core.control_specs import ControlNetSpec
from sdcli.errors import UsageError
from sdcli.images import inputs

# What A1111's ControlNet extension calls each preprocessor in its `Module:` field.
MODULES = {"none": "none", "canny": "canny", "depth": "depth"}
CANNY_THRESHOLDS = (100, 200)  # A1111's ControlNet defaults
CONTROL_HINT = "pip install 'sdcli[control]' (or: pip install opencv-python-headless)"


def check(specs: tuple[ControlNetSpec, ...], preprocess: str, depth_model: str | None = None) -> None:
    """Before the model loads: every control image decodes, the preprocessor's package is installed, and a
    depth model already on disk holds what one needs."""
    from sdcli.model import controlnets, depth

    controlnets.check_local(specs)
    for spec in specs:
        inputs.read_image(spec.image)
    if specs and preprocess == "canny":
        _cv2()
    if specs and preprocess == "depth":
        depth.check(depth_model)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise UsageError(
            "--control-preprocess canny needs OpenCV, which is not installed", hint=CONTROL_HINT
        ) from None
    return cv2


def control_map(image: Any, preprocess: str, depth: Any = None, key: str | None = None) -> Any:
    """The control map of an RGB image: itself (`none`), its Canny edges as white on black, in RGB, or its
    depth map from `depth` (a model.depth.DepthEstimator; `key`: the image's hash, so it is made once)."""
    if preprocess == "none":
        return image
    if preprocess == "depth":
        return depth.depth_map(image, key)
    import numpy as np
    from PIL import Image

    cv2 = _cv2()
    edges = cv2.Canny(np.asarray(image.convert("L")), *CANNY_THRESHOLDS)
    return Image.fromarray(edges).convert("RGB")


def prepare(
    specs: tuple[ControlNetSpec, ...], preprocess: str, width: int, height: int, depth: Any = None
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Each control map at width x height (scaled to cover and centre-cropped), and each image's record."""
    maps, records = [], []
    for spec in specs:
        item = inputs.read_image(spec.image)
        mapped = control_map(item.image, preprocess, depth, item.record.get("hash"))
        maps.append(inputs.conform(mapped, width, height, "crop"))
        records.append(item.record)
    return maps, records


def pipeline_args(
    specs: tuple[ControlNetSpec, ...],
    preprocess: str,
    width: int,
    height: int,
    *,
    image_key: str,
    depth: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ControlNet pipeline's arguments (one value for one ControlNet, lists for several) and each
    control image's record. `image_key`: `image` for text-to-image, `control_image` for img2img/inpaint."""
    maps, records = prepare(specs, preprocess, width, height, depth)
    one = len(specs) == 1
    if any(spec.mode is not None for spec in specs):
        # ControlNet-Union pipelines take lists, one image and mode per condition; for several union
        # models (MultiControlNetUnionModel) the pipeline nests each item itself.
        union = {
            "control_image": maps,
            "control_mode": [spec.mode_index for spec in specs],
            "controlnet_conditioning_scale": specs[0].scale if one else [s.scale for s in specs],
            "control_guidance_start": specs[0].start if one else [s.start for s in specs],
            "control_guidance_end": specs[0].end if one else [s.end for s in specs],
        }
        return union, records
    args = {
        image_key: maps[0] if one else maps,
        "controlnet_conditioning_scale": specs[0].scale if one else [s.scale for s in specs],
        "control_guidance_start": specs[0].start if one else [s.start for s in specs],
        "control_guidance_end": specs[0].end if one else [s.end for s in specs],
    }
    return args, records
