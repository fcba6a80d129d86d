"""The worker's HTTP APIs for other tools: AUTOMATIC1111's `/sdapi/v1/txt2img` and `/sdapi/v1/img2img`,
and OpenAI's `/v1/images/generations`. Images come back base64-encoded PNGs (with sdcli's metadata); nothing
is written to disk. They run the worker's own model (`sdcli serve -m`), under the same lock as the CLI's runs.

Sizes are bounded so that one request cannot take the worker for hours: see LIMITS.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdcli.core.requests import GenerationRequest, ModelRequest
from sdcli.errors import UsageError
from sdcli.worker.protocol import BadRequest

if TYPE_CHECKING:
    from threading import Lock

    from sdcli.model.pipelines import LoadedModel

LIMITS = {"steps": 150, "width": 2048, "height": 2048, "count": 16}
SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


@dataclass(frozen=True)
class Made:
    png: bytes
    record: dict[str, Any]


def _number(data: dict[str, Any], key: str, default: Any, kind: type) -> Any:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{key} must be a number")
    if kind is int and value != int(value):
        raise BadRequest(f"{key} must be a whole number")
    return kind(value)


def _text(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def bounded(request: GenerationRequest) -> GenerationRequest:
    for name, value in (
        ("steps", request.steps),
        ("width", request.width),
        ("height", request.height),
        ("count", request.count),
    ):
        if value is not None and value > LIMITS[name]:
            raise BadRequest(f"{name} {value} is over this worker's limit of {LIMITS[name]}")
    try:
        return request.validated()
    except UsageError as exc:
        raise BadRequest(exc.message) from None


def a1111_request(data: Any) -> tuple[GenerationRequest, str | None]:
    """A1111's txt2img payload (the fields sdcli has; others are ignored, as A1111 ignores unknown ones)."""
    if not isinstance(data, dict):
        raise BadRequest("the request must be a JSON object")
    seed = _number(data, "seed", -1, int)
    count = _number(data, "batch_size", 1, int) * _number(data, "n_iter", 1, int)
    request = GenerationRequest(
        prompt=_text(data, "prompt"),
        negative=_text(data, "negative_prompt"),
        steps=_number(data, "steps", 20, int),
        guidance=_number(data, "cfg_scale", 7.0, float),
        width=_number(data, "width", 512, int),
        height=_number(data, "height", 512, int),
        seed=None if seed == -1 else seed,
        count=count,
        batch_size=_number(data, "batch_size", 1, int),
    )
    if not request.prompt:
        raise BadRequest("prompt is empty")
    sampler = data.get("sampler_name") or data.get("sampler_index")
    if sampler is not None and not isinstance(sampler, str):
        raise BadRequest("sampler_name must be a string")
    return bounded(request), sampler


@dataclass(frozen=True)
class InitImage:
    """img2img's input, read and sized as `sdcli img2img` reads and sizes a file."""

    pipeline_args: dict[str, Any]
    record: dict[str, Any]


def a1111_img2img_request(data: Any) -> tuple[GenerationRequest, str | None, InitImage]:
    """A1111's img2img payload: txt2img's fields, `init_images` (base64; the first is used) and
    `denoising_strength`. Without width/height the input's own size is kept (cut to multiples of 8); with
    them it is resized to them, as A1111's default "Just resize" does."""
    import binascii
    from dataclasses import replace

    from sdcli.images import inputs

    if not isinstance(data, dict):
        raise BadRequest("the request must be a JSON object")
    images = data.get("init_images")
    if not isinstance(images, list) or not images or not isinstance(images[0], str):
        raise BadRequest("init_images must be a list holding one base64 image")
    encoded = images[0].split(",", 1)[-1]  # a data URL's "data:image/png;base64," prefix is allowed
    try:
        item = inputs.read_image_bytes(base64.b64decode(encoded, validate=True), "init_images[0]")
    except (binascii.Error, ValueError):
        raise BadRequest("init_images[0] is not base64") from None
    except UsageError as exc:
        raise BadRequest(exc.message) from None
    sized = "width" in data or "height" in data
    width = _number(data, "width", None, int) if "width" in data else None
    height = _number(data, "height", None, int) if "height" in data else None
    image = inputs.conform(item.image, width, height, "stretch" if sized else "crop")
    request, sampler = a1111_request({**data, "width": image.width, "height": image.height})
    strength = _number(data, "denoising_strength", 0.75, float)
    try:
        request = replace(request, strength=strength).validated()
    except UsageError as exc:
        raise BadRequest(exc.message) from None
    return request, sampler, InitImage({"image": image}, {"init_image": item.record})


def openai_request(data: Any) -> GenerationRequest:
    if not isinstance(data, dict):
        raise BadRequest("the request must be a JSON object")
    if _text(data, "response_format", "b64_json") != "b64_json":
        raise BadRequest("only response_format b64_json is served (this worker keeps no image URLs)")
    size = _text(data, "size", "512x512")
    found = SIZE.match(size)
    if not found:
        raise BadRequest(f"size {size!r} is not WIDTHxHEIGHT")
    request = GenerationRequest(
        prompt=_text(data, "prompt"),
        width=int(found.group(1)),
        height=int(found.group(2)),
        count=_number(data, "n", 1, int),
        seed=None,
    )
    if not request.prompt:
        raise BadRequest("prompt is empty")
    return bounded(request)


def make(
    lock: Lock,
    load: Callable[[ModelRequest], LoadedModel],
    model: ModelRequest,
    request: GenerationRequest,
    sampler: str | None,
    init: InitImage | None = None,
) -> list[Made]:
    """Run one request under the worker's lock (`load` gives its loaded model), in the calling thread; with
    `init`, as img2img on the same weights."""
    from dataclasses import replace

    from sdcli.generation import engine
    from sdcli.images import metadata
    from sdcli.model import pipelines

    if sampler:
        model = replace(model, scheduler=sampler).validated()
    made = []
    with lock:
        loaded = load(model)
        if init is not None:
            loaded = pipelines.for_task(loaded, "img2img")
        inputs = init.pipeline_args if init is not None else None
        for result in engine.generate(loaded, request, inputs=inputs):
            record = {**result.record, **(init.record if init is not None else {})}
            buffer = io.BytesIO()
            result.image.save(buffer, format="PNG", pnginfo=metadata.png_info(record))
            made.append(Made(buffer.getvalue(), record))
    return made


def a1111_response(request: GenerationRequest, made: list[Made]) -> dict[str, Any]:
    from sdcli.images import metadata

    seeds = [m.record["seed"] for m in made]
    info = {
        "prompt": request.prompt,
        "negative_prompt": request.negative,
        "seed": seeds[0] if seeds else request.seed,
        "all_seeds": seeds,
        "steps": request.steps,
        "cfg_scale": request.guidance,
        "width": request.width,
        "height": request.height,
        "sampler_name": made[0].record.get("sampler") if made else None,
        "infotexts": [metadata.a1111_parameters(m.record) for m in made],
    }
    return {
        "images": [base64.b64encode(m.png).decode() for m in made],
        "parameters": {},
        "info": json.dumps(info),
    }


def openai_response(made: list[Made], created: int) -> dict[str, Any]:
    return {"created": created, "data": [{"b64_json": base64.b64encode(m.png).decode()} for m in made]}
