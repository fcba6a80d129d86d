"""`sdcli inpaint IMAGE MASK PROMPT`: repaint the white part of a mask, keep the black part."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from sdcli import options as opt
from sdcli.commands.generate import read_prompt
from sdcli.console import Output
from sdcli.errors import UsageError
from sdcli.requests import DEFAULT_MODEL, GenerationRequest, ModelRequest


def inpaint(
    ctx: typer.Context,
    image: opt.InputImage,
    mask: opt.Mask,
    prompt: Annotated[str, typer.Argument(help="What to paint in the white area; - reads it from stdin.")],
    strength: opt.Strength = 0.75,
    mask_blur: opt.MaskBlur = 4,
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
    """Repaint the white area of MASK in IMAGE from a prompt; the black area is kept as it is."""
    out = Output(quiet=quiet, json=json_, debug=debug)
    ctx.meta["sdcli.debug"] = debug or ctx.meta.get("sdcli.debug", False)
    # 1. Validate everything, and read both files, before anything heavy is imported or loaded.
    model_request = ModelRequest(model, revision, variant, device, dtype, scheduler, schedule).validated()
    request = GenerationRequest(
        read_prompt(prompt), negative, steps, guidance, width, height, seed, count, batch_size, strength
    ).validated()
    if mask_blur < 0:
        raise UsageError(f"--mask-blur must be 0 or more, got {mask_blur}")
    from sdcli import hub, inputs, jobs, outputs, pipelines
    from sdcli.commands._common import image_run

    inputs.check_resize(resize)
    source = inputs.read_image(Path(image))
    inputs.check_size(source, width, height)
    painted = inputs.read_mask(Path(mask))
    init, mask_image = inputs.prepare_inpaint(source.image, painted.image, width, height, resize, mask_blur)
    plan = outputs.plan(output, count=count, overwrite=overwrite, default_name=outputs.INPUT_NAME)
    model_name = pipelines.display_name(model_request.model)
    paths = jobs.planned_paths(plan, request, model_name, datetime.now(), input_name=source.path.stem)
    outputs.check_free(paths, plan)
    if offline:
        hub.set_offline()
    # 2. Load the model once, then 3. repaint, pasting the kept area back as A1111 does.
    with image_run(out, model_request, total=count, steps=request.steps) as run:
        loaded = pipelines.for_task(run.model, "inpaint")
        extra = {
            "init_image": source.record,
            "mask": painted.record,
            "mask_blur": mask_blur,
            "resize": resize if width or height else None,
        }
        for written in jobs.generate_and_save(
            loaded,
            replace(request, width=init.width, height=init.height),
            plan,
            paths,
            with_metadata=not no_metadata,
            inputs={"image": init, "mask_image": mask_image},
            extra_record=extra,
            on_step=run.on_step,
            finish=inputs.paste_back(init, mask_image),
        ):
            run.report(written, input=str(source.path))
