"""`sdcli img2img PROMPT IMAGE...`: repaint existing images from a prompt.

The prompt comes first, as in `generate`, and the images last, so shell globs and `xargs` append them:
`sdcli img2img "a watercolor painting" photos/*.jpg`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sdcli.commands import common
from sdcli.commands import options as opt
from sdcli.commands.console import Output
from sdcli.core.image_args import ImageArgs
from sdcli.core.requests import REFINER_SWITCH
from sdcli.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from sdcli.generation.jobs import JobInputs


def check_prompt(prompt: str, usage: str) -> None:
    """A forgotten prompt shifts the arguments: `img2img a.png b.png` would draw "a.png" onto b.png."""
    from sdcli.images.inputs import SUFFIXES

    if Path(prompt).suffix.lower() in SUFFIXES and Path(prompt).is_file():
        raise UsageError(f"the prompt {prompt!r} is an image file", hint=f"usage: {usage}")


def read_input(path: Path, width: int | None, height: int | None, resize: str) -> JobInputs:
    """One input, read again when its turn comes (it may have changed since it was checked)."""
    from sdcli.worker import job_inputs

    return job_inputs.read_img2img(path, width, height, resize)


@opt.image_options
def img2img(
    ctx: typer.Context,
    args: ImageArgs,
    prompt: Annotated[str, typer.Argument(help="What to make of the images; - reads it from stdin.")],
    images: opt.InputImages,
    strength: opt.Strength = 0.75,
    width: opt.InputWidth = None,
    height: opt.InputHeight = None,
    resize: opt.Resize = "crop",
    output: opt.InputOutput = None,
    refiner: opt.Refiner = None,
    refiner_switch: opt.RefinerSwitch = REFINER_SWITCH,
) -> None:
    """Repaint images from a prompt; each input gets its own outputs, named after it.

    A bad input is reported on one line and skipped; the run goes on and exits 2 at the end.
    """
    out = Output(quiet=args.quiet, json=args.json_)
    # 1. Validate everything, and read every input once, before anything heavy is imported or loaded.
    args = common.remade(out, args)
    model_request = args.model_request()
    request = args.generation_request()
    check_prompt(args.prompt or "", "sdcli img2img PROMPT IMAGE...")
    from sdcli.generation import distributed
    from sdcli.images import inputs
    from sdcli.worker import job_inputs

    inputs.check_resize(resize)
    ready, problems = inputs.collect(images, args.width, args.height)
    for problem in problems:
        out.error(problem.message)
    if not ready:
        raise typer.Exit(int(ExitCode.USAGE))
    processes = distributed.current()
    work = [
        common.JobSpec(
            request,
            input_name=path.stem,
            source=str(path),
            read_inputs=partial(read_input, path, args.width, args.height, resize),
            remote=job_inputs.img2img_spec(path, args.width, args.height, resize),
        )
        for path in distributed.share(ready, processes)
    ]
    plan = common.plan_run(
        args,
        model_request,
        work,
        count=request.count,
        task="img2img",
        per_input=len(ready) > 1,
        bad_inputs=len(problems),
    )
    # 2. Load the model once for all inputs, then 3. read, size and repaint each input in turn.
    common.execute(out, plan, processes=processes)
