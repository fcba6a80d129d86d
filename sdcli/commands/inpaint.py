"""`sdcli inpaint IMAGE MASK PROMPT`: repaint the white part of a mask, keep the black part."""

from __future__ import annotations

from dataclasses import replace
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
    # No refiner here (an SDXL inpainting one would be needed): one an image was made with is not reused.
    args = replace(common.remade(out, args), refiner=None)
    model_request = args.model_request()
    request = args.generation_request()
    if mask_blur < 0:
        raise UsageError(f"--mask-blur must be 0 or more, got {mask_blur}")
    from sdcli.generation import distributed, prompt_files
    from sdcli.images import inputs
    from sdcli.worker import job_inputs

    inputs.check_resize(resize)
    source = Path(image)
    # The kept (black) area is pasted back from the input, as A1111 does, so it stays exactly the input.
    ready = job_inputs.read_inpaint(source, Path(mask), args.width, args.height, resize, mask_blur)
    remote = job_inputs.inpaint_spec(source, Path(mask), args.width, args.height, resize, mask_blur)
    processes = distributed.current()
    work = [
        common.JobSpec(
            line.request,
            input_name=source.stem,
            source=str(source),
            read_inputs=lambda: ready,
            remote=remote,
        )
        for line in distributed.spread([prompt_files.PromptLine(0, request)], processes)
    ]
    plan = common.plan_run(args, model_request, work, count=request.count, task="inpaint")
    # 2. Load the model once, then 3. repaint.
    common.execute(out, plan, processes=processes)
