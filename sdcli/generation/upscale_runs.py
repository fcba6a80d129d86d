"""`sdcli upscale`'s run: check every input and output name first, load the model once, then upscale each
input in turn and write it with its metadata carried over.

torch is imported only when a model upscales: a Lanczos run stays on Pillow.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sdcli.core.requests import MAX_SEED, ModelRequest
from sdcli.errors import UsageError
from sdcli.generation.upscaling import ModelOptions
from sdcli.images import inputs, metadata, outputs, upscale
from sdcli.images.inputs import InputError
from sdcli.images.upscale import Upscaler


@dataclass(frozen=True)
class UpscaleRequest:
    images: list[str]
    upscaler: str = upscale.LANCZOS
    scale: float | None = None  # None: the model's own factor (Lanczos: 2)
    width: int | None = None
    height: int | None = None
    output: str | None = None
    overwrite: bool = False
    with_metadata: bool = True
    device: str = "auto"
    dtype: str = "auto"
    model: ModelOptions = ModelOptions()


@dataclass(frozen=True)
class UpscalePlan:
    request: UpscaleRequest
    upscaler: Upscaler
    work: list[tuple[Path, Path]]  # input, output
    problems: list[InputError]  # inputs that cannot be used, reported and skipped
    outputs: outputs.OutputPlan


@dataclass(frozen=True)
class Upscaled:
    path: Path
    source: Path
    size: tuple[int, int]
    entry: dict[str, Any]  # the image's `upscale` record
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "image",
            "path": str(self.path),
            "input": str(self.source),
            "width": self.size[0],
            "height": self.size[1],
            "upscale": self.entry,
            "seconds": round(self.seconds, 3),
        }


def plan(request: UpscaleRequest) -> UpscalePlan:
    """Everything that can be wrong with the options, the inputs and the output names, found before any
    model loads."""
    upscale.check_size_options(request.scale, request.width, request.height)
    upscaler = upscale.parse_upscaler(request.upscaler)
    if upscaler.kind != upscale.LANCZOS:
        ModelRequest(upscaler.value, device=request.device, dtype=request.dtype).validated()
        request = replace(request, model=_seeded(request.model.validated()))
    files, problems = inputs.expand(request.images)
    ready: list[Path] = []
    default = upscaler.scale or upscale.DEFAULT_SCALE
    for path in files:
        try:
            image = inputs.read_image(path).image
            if upscaler.kind == upscale.LANCZOS or upscaler.scale is not None or request.scale is not None:
                size = upscale.target_size(image.size, request.scale, request.width, request.height, default)
                upscale.check_output_size(str(path), size)
        except UsageError as exc:
            problems.append(exc if isinstance(exc, InputError) else InputError(exc.message))
        else:
            ready.append(path)
    names = outputs.plan(
        request.output,
        count=1,
        overwrite=request.overwrite,
        default_name=outputs.UPSCALE_NAME,
        per_input=len(ready) > 1,
    )
    started = datetime.now()
    seed = (request.model.seed or 0) if upscaler.kind == "pipeline" else 0
    paths = [
        outputs.render(
            names, started=started, seed=seed, index=0, prompt="", model=upscaler.name, input_name=p.stem
        )
        for p in ready
    ]
    outputs.check_free(paths, names)
    return UpscalePlan(request, upscaler, list(zip(ready, paths, strict=True)), problems, names)


def _seeded(options: ModelOptions) -> ModelOptions:
    """A random seed is drawn once and recorded, as generate's are."""
    return options if options.seed is not None else replace(options, seed=secrets.randbelow(MAX_SEED))


def run(plan: UpscalePlan) -> Iterator[Upscaled | InputError]:
    """Each input's result in turn, or the error that made it unusable (the run goes on)."""
    request = plan.request
    loaded = None
    if plan.upscaler.kind != upscale.LANCZOS and plan.work:
        from sdcli.generation import upscaling

        loaded = upscaling.load(plan.upscaler, request.device, request.dtype)
    for source, path in plan.work:
        began = time.perf_counter()
        try:
            image = inputs.read_image(source).image  # read again: it may have changed since it was checked
            found = _source_metadata(source)
            scale = request.scale
            if request.width is None and request.height is None and scale is None:
                scale = (
                    float(loaded.upscaler.scale or upscale.DEFAULT_SCALE) if loaded else upscale.DEFAULT_SCALE
                )
            size = upscale.target_size(
                image.size, scale, request.width, request.height, upscale.DEFAULT_SCALE
            )
            upscale.check_output_size(str(source), size)
        except UsageError as exc:
            yield exc if isinstance(exc, InputError) else InputError(exc.message)
            continue
        entry: dict[str, Any] = {
            "upscaler": plan.upscaler.name if loaded is None else loaded.upscaler.name,
            "scale": scale,
            "width": size[0],
            "height": size[1],
            "input": {"width": image.width, "height": image.height},
        }
        once = None
        if loaded is not None:
            from sdcli.generation import upscaling

            options = request.model
            if options.prompt is None:  # the x4 model is text-guided: the prompt that made the image fits it
                options = replace(options, prompt=(found.prompt if found else None) or "")
            entry.update(upscaling.record(loaded, options))

            def once(im: Any, options: ModelOptions = options) -> Any:
                return upscaling.upscale_once(loaded, im, options)

        result, passes = upscale.to_size(image, size, once)
        if loaded is not None:
            entry["passes"] = passes
        info = upscale.carried_info(found, entry) if request.with_metadata else None
        written = outputs.write_png(
            result, path, info, overwrite=plan.outputs.overwrite, unique=not plan.outputs.explicit
        )
        yield Upscaled(written, source, size, entry, time.perf_counter() - began)


def _source_metadata(source: Path) -> metadata.ImageMetadata | None:
    """What the input carries; metadata that cannot be read is not carried, and the pixels still upscale."""
    try:
        return metadata.read_metadata(source)
    except UsageError:
        return None
