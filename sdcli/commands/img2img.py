"""`sdcli img2img PROMPT IMAGE...`: repaint existing images from a prompt.

The prompt comes first, as in `generate`, and the images last, so shell globs and `xargs` append them:
`sdcli img2img "a watercolor painting" photos/*.jpg`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from sdcli import options as opt
from sdcli.commands.generate import read_prompt
from sdcli.console import Output
from sdcli.errors import ExitCode, UsageError
from sdcli.requests import DEFAULT_MODEL, GenerationRequest, ModelRequest


def check_prompt(prompt: str, usage: str) -> None:
    """A forgotten prompt shifts the arguments: `img2img a.png b.png` would draw "a.png" onto b.png."""
    from sdcli.inputs import SUFFIXES

    if Path(prompt).suffix.lower() in SUFFIXES and Path(prompt).is_file():
        raise UsageError(f"the prompt {prompt!r} is an image file", hint=f"usage: {usage}")


def img2img(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to make of the images; - reads it from stdin.")],
    images: opt.InputImages,
    strength: opt.Strength = 0.75,
    negative: opt.Negative = "",
    model: opt.Model = DEFAULT_MODEL,
    revision: opt.Revision = None,
    variant: opt.Variant = None,
    scheduler: opt.Scheduler = None,
    schedule: opt.Schedule = None,
    steps: opt.Steps = 30,
    guidance: opt.Guidance = 7.0,
    width: opt.InputWidth = None,
    height: opt.InputHeight = None,
    resize: opt.Resize = "crop",
    seed: opt.Seed = None,
    count: opt.Count = 1,
    batch_size: opt.BatchSize = 1,
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    output: opt.InputOutput = None,
    overwrite: opt.Overwrite = False,
    no_metadata: opt.NoMetadata = False,
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    offline: opt.Offline = False,
    debug: opt.Debug = False,
) -> None:
    """Repaint images from a prompt; each input gets its own outputs, named after it.

    A bad input is reported on one line and skipped; the run goes on and exits 2 at the end.
    """
    out = Output(quiet=quiet, json=json_, debug=debug)
    ctx.meta["sdcli.debug"] = debug or ctx.meta.get("sdcli.debug", False)
    # 1. Validate everything, and read every input once, before anything heavy is imported or loaded.
    model_request = ModelRequest(model, revision, variant, device, dtype, scheduler, schedule).validated()
    request = GenerationRequest(
        read_prompt(prompt), negative, steps, guidance, width, height, seed, count, batch_size, strength
    ).validated()
    check_prompt(prompt, "sdcli img2img PROMPT IMAGE...")
    from sdcli import hub, inputs, jobs, outputs, pipelines
    from sdcli.commands._common import image_run

    inputs.check_resize(resize)
    ready, problems = inputs.collect(images, width, height)
    for problem in problems:
        out.error(problem.message)
    if not ready:
        raise typer.Exit(int(ExitCode.USAGE))
    plan = outputs.plan(
        output, count=count, overwrite=overwrite, default_name=outputs.INPUT_NAME, per_input=len(ready) > 1
    )
    started, model_name = datetime.now(), pipelines.display_name(model_request.model)
    paths = {p: jobs.planned_paths(plan, request, model_name, started, input_name=p.stem) for p in ready}
    outputs.check_free([path for planned in paths.values() for path in planned], plan)
    if offline:
        hub.set_offline()
    # 2. Load the model once for all inputs, then 3. read, size and repaint each input in turn.
    with image_run(out, model_request, total=count * len(ready), steps=request.steps) as run:
        loaded = pipelines.for_task(run.model, "img2img")
        for path in ready:
            try:
                item = inputs.read_image(path)  # again: it may have changed since the first read
            except inputs.InputError as exc:
                out.error(exc.message)
                problems.append(exc)
                continue
            image = inputs.conform(item.image, width, height, resize)
            extra = {"init_image": item.record, "resize": resize if width or height else None}
            for written in jobs.generate_and_save(
                loaded,
                replace(request, width=image.width, height=image.height),
                plan,
                paths[path],
                with_metadata=not no_metadata,
                inputs={"image": image},
                extra_record=extra,
                on_step=run.on_step,
            ):
                run.report(written, input=str(path))
    if problems:
        raise UsageError(f"{len(problems)} input(s) could not be read (named above); the others were written")
