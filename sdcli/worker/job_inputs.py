"""img2img and inpaint on a worker: the worker reads each job's input image (and mask) itself, from the
absolute paths the client checked, the same way `commands/img2img.read_input` and `commands/inpaint` do.

Only a Unix-socket client (this user) may name inputs: a TCP client could otherwise make the worker read
any image file it can open.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.worker.protocol import BadRequest

if TYPE_CHECKING:
    from sdcli.generation.jobs import JobInputs

TASKS = ("img2img", "inpaint")
RESIZES = ("crop", "fit", "stretch")


def img2img_spec(path: Path, width: int | None, height: int | None, resize: str) -> dict[str, Any]:
    return {"image": os.path.abspath(path), "width": width, "height": height, "resize": resize}


def inpaint_spec(
    image: Path, mask: Path, width: int | None, height: int | None, resize: str, mask_blur: int
) -> dict[str, Any]:
    spec = img2img_spec(image, width, height, resize)
    return {**spec, "mask": os.path.abspath(mask), "mask_blur": mask_blur}


def _path(value: Any, what: str) -> Path:
    if not isinstance(value, str) or not os.path.isabs(value) or "\x00" in value:
        raise BadRequest(f"inputs.{what} must be an absolute path")
    return Path(value)


def _size(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 8:
        raise BadRequest(f"inputs.{what} must be a positive multiple of 8")
    return value


def reader(task: str | None, spec: Any) -> Callable[[], JobInputs]:
    """Checks `spec` now and returns what reads the job's inputs when its turn comes."""
    from functools import partial

    if task not in TASKS:
        raise BadRequest("inputs are only for the img2img and inpaint tasks")
    if not isinstance(spec, dict):
        raise BadRequest("a job's inputs must be a JSON object")
    known = {"image", "width", "height", "resize"} | ({"mask", "mask_blur"} if task == "inpaint" else set())
    unknown = sorted(set(spec) - known)
    if unknown:
        raise BadRequest(f"inputs: unknown field(s) {', '.join(unknown)}")
    image = _path(spec.get("image"), "image")
    width, height = _size(spec.get("width"), "width"), _size(spec.get("height"), "height")
    resize = spec.get("resize", "crop")
    if resize not in RESIZES:
        raise BadRequest(f"inputs.resize must be one of {', '.join(RESIZES)}")
    if task == "img2img":
        return partial(read_img2img, image, width, height, resize)
    blur = spec.get("mask_blur", 4)
    if isinstance(blur, bool) or not isinstance(blur, int) or blur < 0:
        raise BadRequest("inputs.mask_blur must be 0 or more")
    return partial(read_inpaint, image, _path(spec.get("mask"), "mask"), width, height, resize, blur)


def read_img2img(path: Path, width: int | None, height: int | None, resize: str) -> JobInputs:
    """As `commands/img2img.read_input`."""
    from sdcli.generation.jobs import JobInputs
    from sdcli.images import inputs

    item = inputs.read_image(path)
    image = inputs.conform(item.image, width, height, resize)
    record = {"init_image": item.record, "resize": resize if width or height else None}
    return JobInputs({"image": image}, record, image.width, image.height)


def read_inpaint(
    image: Path, mask: Path, width: int | None, height: int | None, resize: str, mask_blur: int
) -> JobInputs:
    """As `commands/inpaint`: the kept (black) area is pasted back from the input."""
    from sdcli.generation.jobs import JobInputs
    from sdcli.images import inputs

    source = inputs.read_image(image)
    inputs.check_size(source, width, height)
    painted = inputs.read_mask(mask)
    init, mask_image = inputs.prepare_inpaint(source.image, painted.image, width, height, resize, mask_blur)
    record = {
        "init_image": source.record,
        "mask": painted.record,
        "mask_blur": mask_blur,
        "resize": resize if width or height else None,
    }
    return JobInputs(
        {"image": init, "mask_image": mask_image},
        record,
        init.width,
        init.height,
        inputs.paste_back(init, mask_image),
    )
