"""`sdcli inpaint IMAGE MASK PROMPT`: repaint the white part of a mask, keep the black part."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sdcli.commands import common
from sdcli.commands import options as opt
from sdcli.commands.console import Output
from sdcli.core.image_args import ImageArgs
from sdcli.errors import UsageError


@opt.image_options
def inpaint(
    ctx: typer.Context,
    args: ImageArgs,
    image: opt.InputImage,
    mask: opt.Mask,
    prompt: Annotated[str, typer.Argument(help="What to paint in the white area; - reads it from stdin.")],
    strength: opt.Strength = 0.75,
    mask_blur: opt.MaskBlur = 4,
    width: opt.InputWidth = None,
    height: opt.InputHeight = None,
    resize: opt.Resize = "crop",
    output: opt.InputOutput = None,
) -> None:
    """Repaint the white area of MASK in IMAGE from a prompt; the black area is kept as it is."""
    out = Output(quiet=args.quiet, json=args.json_)
    # 1. Validate everything, and read both files, before anything heavy is imported or loaded.
    args = common.remade(out, args)
    model_request = args.model_request()
    request = args.generation_request()
    if mask_blur < 0:
        raise UsageError(f"--mask-blur must be 0 or more, got {mask_blur}")
    from sdcli.generation import distributed, jobs, prompt_files
    from sdcli.images import inputs

    inputs.check_resize(resize)
    source = inputs.read_image(Path(image))
    inputs.check_size(source, args.width, args.height)
    painted = inputs.read_mask(Path(mask))
    init, mask_image = inputs.prepare_inpaint(
        source.image, painted.image, args.width, args.height, resize, mask_blur
    )
    record = {
        "init_image": source.record,
        "mask": painted.record,
        "mask_blur": mask_blur,
        "resize": resize if args.width or args.height else None,
    }
    # The kept (black) area is pasted back from the input, as A1111 does, so it stays exactly the input.
    ready = jobs.JobInputs(
        {"image": init, "mask_image": mask_image},
        record,
        init.width,
        init.height,
        inputs.paste_back(init, mask_image),
    )
    processes = distributed.current()
    work = [
        common.JobSpec(
            line.request, input_name=source.path.stem, source=str(source.path), read_inputs=lambda: ready
        )
        for line in distributed.spread([prompt_files.PromptLine(0, request)], processes)
    ]
    plan = common.plan_run(args, model_request, work, count=request.count, task="inpaint")
    # 2. Load the model once, then 3. repaint.
    common.execute(out, plan, processes=processes)
