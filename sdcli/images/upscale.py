"""`sdcli upscale`'s torch-free half: what an `--upscaler` value names, the output size, Lanczos, and the
metadata an upscaled image carries (its source's own, plus what A1111's Extras tab adds).

Pillow and the standard library only: `sdcli upscale --upscaler lanczos` never imports torch.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdcli.errors import UsageError
from sdcli.hub import selection
from sdcli.images import foreign_formats as ff
from sdcli.images import metadata
from sdcli.images.inputs import DEFAULT_MAX_PIXELS
from sdcli.model.sources import HUB_ID, display_name

LANCZOS = "lanczos"
# diffusers' upscale pipelines and the factor each upscales by.
PIPELINES = {"StableDiffusionUpscalePipeline": 4, "StableDiffusionLatentUpscalePipeline": 2}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
UPSCALE_HINT = "pip install 'sdcli[upscale]'  (or: pip install spandrel)"
DEFAULT_SCALE = 2.0  # Lanczos has no scale of its own; A1111's Extras tab starts at 2 too
MAX_SCALE = 16.0
MAX_SIDE = 16_384
# A model upscales by its own factor; a larger --scale runs it again on its output (A1111 does the same, up
# to 3 times), and what overshoots is brought to the size with Lanczos.
MAX_PASSES = 3
LATENT = "latent"  # the hires fix's own: the latents resized, no upscaler
_UPSCALER_HINT = (
    "use {words}, an ESRGAN-family .safetensors/.pth file, or a diffusers upscaler folder or Hub id"
)
# Chunks not carried over: rewritten here (sdcli, postprocessing, extras), or read from the pixels' low bits,
# which resampling destroys (stealth metadata).
_REPLACED = frozenset({"sdcli", "postprocessing", "extras", *ff.STEALTH_SIGNATURES})


@dataclass(frozen=True)
class Upscaler:
    kind: str  # "lanczos", "pipeline" (diffusers) or "esrgan" (a spandrel weights file)
    value: str  # as the user gave it: the model to load
    name: str  # what metadata records: never a path
    scale: int | None = None  # the model's own factor; None until known (a Hub id, an ESRGAN file)
    pipeline_class: str | None = None


def parse_upscaler(value: str, flag: str = "--upscaler", words: tuple[str, ...] = (LANCZOS,)) -> Upscaler:
    """What `--upscaler` (or `flag`) names, checked without importing torch: a local folder must be an
    upscale pipeline, a weights file needs spandrel installed. `words`: the names it takes besides models."""
    hint = _UPSCALER_HINT.format(words=", ".join(words))
    if value.strip().casefold() == LANCZOS:
        return Upscaler(LANCZOS, LANCZOS, LANCZOS)
    path = Path(value).expanduser()
    if path.suffix.lower() in WEIGHT_SUFFIXES:
        if not path.is_file():
            raise UsageError(f"{flag} {value}: no such file")
        if importlib.util.find_spec("spandrel") is None:
            raise UsageError(
                f"{flag} {path.name}: ESRGAN-family models need spandrel, which is not installed",
                hint=UPSCALE_HINT,
            )
        return Upscaler("esrgan", str(path), path.stem)
    if path.is_dir():
        cls = folder_pipeline_class(path, flag)
        return Upscaler("pipeline", str(path), display_name(str(path)), PIPELINES[cls], cls)
    if path.exists():
        raise UsageError(f"{flag} {value}: not a .safetensors/.pth file or a folder", hint=hint)
    # A bare word ("bicubic", "esrgan") is a mistyped upscaler name far more often than a Hub repo.
    if "/" in value and HUB_ID.match(value):
        return Upscaler("pipeline", value, value)
    raise UsageError(f"{flag} {value!r} is not an upscaler sdcli knows", hint=hint)


def parse_hires_upscaler(value: str) -> Upscaler | None:
    """generate's `--hires-upscaler`: latent (None: no upscaler, the latents are resized), or what
    `sdcli upscale --upscaler` takes."""
    if value == LATENT:
        return None
    return parse_upscaler(value, "--hires-upscaler", (LATENT, LANCZOS))


def find_by_name(name: str) -> str | None:
    """An upscaler a record names (a Hub id, or a local folder's name or weights file's stem), as it can be
    loaded here: a Hub id as it is, a name from the working folder. None: not found."""
    # Only below the working folder: a record holds names, and one naming a path elsewhere is not sdcli's.
    local = not Path(name).is_absolute() and ".." not in Path(name).parts
    for candidate in (name, *(name + suffix for suffix in WEIGHT_SUFFIXES)) if local else ():
        if Path(candidate).exists():
            return f"./{candidate}"
    if "/" in name and HUB_ID.match(name):
        return name
    return None


def folder_pipeline_class(folder: Path, flag: str = "--upscaler") -> str:
    try:
        index = selection.read_model_index(folder / selection.MODEL_INDEX)
    except (OSError, ValueError):
        raise UsageError(
            f"{flag} {folder.name}: no readable model_index.json, so not a diffusers upscaler folder",
            hint=_UPSCALER_HINT.format(words=LANCZOS),
        ) from None
    return check_pipeline_class(str(index.get("_class_name", "")), folder.name, flag)


def check_pipeline_class(cls: str, name: str, flag: str = "--upscaler") -> str:
    if cls not in PIPELINES:
        raise UsageError(
            f"{flag} {name} is a {cls or 'pipeline of no named class'}, not an upscaler",
            hint=f"diffusers' upscalers are {' and '.join(PIPELINES)}",
        )
    return cls


# -- sizes ---------------------------------------------------------------------------------------------------


def check_size_options(scale: float | None, width: int | None, height: int | None) -> None:
    if scale is not None and (width is not None or height is not None):
        raise UsageError("--scale and --width/--height both give the size", hint="pass one or the other")
    if scale is not None and not 0 < scale <= MAX_SCALE:
        raise UsageError(f"--scale {scale:g} is not in (0, {MAX_SCALE:g}]")
    for flag, side in (("--width", width), ("--height", height)):
        if side is not None and not 1 <= side <= MAX_SIDE:
            raise UsageError(f"{flag} {side} is not between 1 and {MAX_SIDE}")


def target_size(
    size: tuple[int, int], scale: float | None, width: int | None, height: int | None, default: float
) -> tuple[int, int]:
    """The output size: `scale` (else `default`) times the input's, or --width/--height, where one alone
    keeps the input's aspect ratio."""
    in_w, in_h = size
    if width is None and height is None:
        factor = default if scale is None else scale
        return max(1, round(in_w * factor)), max(1, round(in_h * factor))
    if height is None:
        assert width is not None
        return width, max(1, round(width * in_h / in_w))
    if width is None:
        return max(1, round(height * in_w / in_h)), height
    return width, height


def check_output_size(name: str, size: tuple[int, int]) -> None:
    limit = Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_PIXELS
    if size[0] * size[1] > limit or max(size) > MAX_SIDE:
        raise UsageError(f"{name}: upscaled to {size[0]}x{size[1]} is too large (over {limit:,} pixels)")


def lanczos(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def to_size(
    image: Image.Image, size: tuple[int, int], once: Callable[[Image.Image], Image.Image] | None
) -> tuple[Image.Image, int]:
    """`image` at `size`: through the model (`once`, one pass at its own factor) until it is at least that
    large, then Lanczos to the exact size. Also how many model passes ran."""
    passes = 0
    while once is not None and passes < MAX_PASSES and (image.width < size[0] or image.height < size[1]):
        image, passes = once(image), passes + 1
    return lanczos(image, size), passes


# -- metadata ------------------------------------------------------------------------------------------------


def postprocessing_text(entry: Mapping[str, Any]) -> str:
    """A1111's Extras infotext: `Postprocess upscale by: 2, Postprocess upscaler: Lanczos` (or `upscale to:
    WxH` when a size was asked for)."""
    fields: dict[str, Any] = {}
    if entry.get("scale") is not None:
        fields["Postprocess upscale by"] = entry["scale"]
    else:
        fields["Postprocess upscale to"] = f"{entry['width']}x{entry['height']}"
    upscaler = entry["upscaler"]
    fields["Postprocess upscaler"] = "Lanczos" if upscaler == LANCZOS else upscaler
    return ", ".join(f"{key}: {metadata.format_value(value)}" for key, value in fields.items())


def carried_info(source: metadata.ImageMetadata | None, entry: Mapping[str, Any]) -> PngInfo:
    """The source's text chunks as they were (its `parameters` stays what made it), its sdcli record with an
    `upscale` entry added, and A1111's `postprocessing` and `extras` chunks.

    An image without an sdcli record gets none: a record holding only the upscale would hide the
    parameters text other tools wrote, since a reader takes the record first."""
    texts: dict[str, str] = {}
    if source is not None:
        texts = {key: value for key, value in source.raw.items() if key not in _REPLACED}
        if source.record is not None:
            record = {**source.record, "upscale": dict(entry)}
            texts["sdcli"] = json.dumps(record, ensure_ascii=False, sort_keys=True, allow_nan=False)
    text = postprocessing_text(entry)
    # A1111 writes the Extras infotext twice: as `postprocessing`, and as the section it saves under.
    texts.update(postprocessing=text, extras=text)
    return metadata.text_chunks(texts)
