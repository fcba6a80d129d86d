"""`--xy AXIS=V1,V2,...`: A1111's X/Y/Z plot. One run over every combination of up to three axes, each cell
an ordinary image (named, recorded and remade like any other), and a labelled sheet per Z value.

Cells share the seed unless `seed` is an axis, so they differ only by what the axes change. `prompt` is
A1111's Prompt S/R: the first value is searched in the prompt and each value replaces it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from typing import Any

from sdcli.core.image_args import ImageArgs
from sdcli.errors import UsageError

# --xy name -> (ImageArgs field, the label A1111's X/Y/Z plot gives it)
AXES = {
    "steps": ("steps", "Steps"),
    "cfg": ("guidance", "CFG Scale"),
    "guidance": ("guidance", "CFG Scale"),
    "seed": ("seed", "Seed"),
    "width": ("width", "Width"),
    "height": ("height", "Height"),
    "strength": ("strength", "Denoising"),
    "clip-skip": ("clip_skip", "Clip skip"),
    "negative": ("negative", "Negative prompt"),
    "prompt": ("prompt", "Prompt S/R"),
    "refiner-switch": ("refiner_switch", "Refiner switch at"),
}
_TYPES = {"steps": int, "seed": int, "width": int, "height": int, "clip_skip": int, "guidance": float}
MAX_AXES = 3
MAX_CELLS = 1000  # a typo in a range should not plan a night of work


@dataclass(frozen=True)
class Axis:
    name: str  # as given: "cfg"
    field: str  # the ImageArgs field it sets: "guidance"
    label: str
    values: tuple[Any, ...]

    def text(self, value: Any) -> str:
        return f"{self.label}: {value:g}" if isinstance(value, float) else f"{self.label}: {value}"

    def as_record(self) -> dict[str, Any]:
        return {"axis": self.name, "values": list(self.values)}


@dataclass(frozen=True)
class Plot:
    axes: list[Axis]
    per_cell: int  # images per cell (--count): cell k holds images k*per_cell ... (k+1)*per_cell - 1


def parse(text: str) -> Axis:
    """`steps=10,20,30`; values are CSV, so `prompt="a cat, at night",a dog` keeps its comma."""
    name, sep, raw = text.partition("=")
    name = name.strip().lower().replace("_", "-")
    if not sep or name not in AXES:
        raise UsageError(
            f"--xy {text!r}: expected AXIS=V1,V2,... with AXIS one of {', '.join(sorted(AXES))}",
            hint="e.g. --xy steps=10,20 --xy cfg=5,7",
        )
    field, label = AXES[name]
    values = [v.strip() for v in next(csv.reader([raw], skipinitialspace=True), [])]
    if not values or any(v == "" for v in values):
        raise UsageError(f"--xy {text!r}: give at least one value, separated by commas")
    convert = _TYPES.get(field, str if field in ("prompt", "negative") else float)
    try:
        typed = tuple(convert(v) for v in values)
    except ValueError:
        raise UsageError(f"--xy {name}: every value must be a {convert.__name__}, got {raw!r}") from None
    if any(isinstance(v, float) and not math.isfinite(v) for v in typed):
        raise UsageError(f"--xy {name}: values must be finite numbers")
    return Axis(name, field, label, typed)


def parse_all(texts: list[str] | tuple[str, ...]) -> list[Axis]:
    axes = [parse(text) for text in texts]
    if len(axes) > MAX_AXES:
        raise UsageError(f"--xy takes at most {MAX_AXES} axes (X, Y, Z), got {len(axes)}")
    fields = [axis.field for axis in axes]
    if len(set(fields)) < len(fields):
        raise UsageError("--xy names the same option twice")
    if math.prod(len(axis.values) for axis in axes) > MAX_CELLS:
        raise UsageError(f"--xy makes more than {MAX_CELLS} cells; split the run")
    return axes


def cells(args: ImageArgs, axes: list[Axis]) -> list[ImageArgs]:
    """Every combination, X fastest, then Y, then Z, as the sheet reads."""
    found = [args]
    for axis in axes:
        found = [_with(cell, axis, value) for value in axis.values for cell in found]
    return found


def _with(args: ImageArgs, axis: Axis, value: Any) -> ImageArgs:
    if axis.field == "prompt":
        search = str(axis.values[0])
        prompt = args.prompt or ""
        if search not in prompt:
            raise UsageError(f"--xy prompt: {search!r} is not in the prompt", hint="Prompt S/R replaces it")
        return replace(args, prompt=prompt.replace(search, str(value)), defaulted=args.defaulted - {"prompt"})
    if axis.field == "strength" and args.strength is None:
        raise UsageError("--xy strength: this command has no --strength (img2img and inpaint do)")
    if axis.field == "refiner_switch" and args.refiner is None:
        raise UsageError("--xy refiner-switch needs --refiner MODEL")
    return replace(args, **{axis.field: value}, defaulted=args.defaulted - {axis.field})


def layout(axes: list[Axis]) -> tuple[int, int, int]:
    """(columns, rows, sheets) of the plot."""
    sizes = [len(axis.values) for axis in axes] + [1] * (MAX_AXES - len(axes))
    return sizes[0], sizes[1], sizes[2]


def sheet(tiles: list[Any], axes: list[Axis]) -> Any:
    """One Z value's tiles (row-major; None for a cell with no image) on a sheet with the X values above
    and the Y values to the left."""
    from PIL import Image, ImageDraw, ImageFont

    columns, rows, _ = layout(axes)
    present = [tile for tile in tiles if tile is not None]
    width, height = max(t.width for t in present), max(t.height for t in present)
    font = ImageFont.load_default(size=max(12, height // 12))
    x_labels = [axes[0].text(v) for v in axes[0].values]
    y_labels = [axes[1].text(v) for v in axes[1].values] if len(axes) > 1 else []
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line = int(font.size * 1.4) if hasattr(font, "size") else 16
    top = line + 8
    left = max((int(draw.textlength(label, font=font)) for label in y_labels), default=0) + (
        16 if y_labels else 0
    )
    page = Image.new("RGB", (left + columns * width, top + rows * height), "white")
    ink = ImageDraw.Draw(page)
    for i, label in enumerate(x_labels):
        ink.text((left + i * width + width // 2, top // 2), label, fill="black", font=font, anchor="mm")
    for j, label in enumerate(y_labels):
        ink.text((left - 8, top + j * height + height // 2), label, fill="black", font=font, anchor="rm")
    for k, tile in enumerate(tiles):
        x, y = left + (k % columns) * width, top + (k // columns) * height
        if tile is None:
            ink.rectangle((x, y, x + width - 1, y + height - 1), fill="gray")
        else:
            page.paste(tile.convert("RGB"), (x, y))
    return page
