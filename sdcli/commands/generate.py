"""`sdcli generate`: text to image."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated

import typer

from sdcli import options as opt
from sdcli.console import Output
from sdcli.errors import UsageError
from sdcli.requests import DEFAULT_MODEL, GenerationRequest, ModelRequest


def read_prompt(prompt: str | None) -> str:
    if prompt == "-":
        prompt = sys.stdin.read().strip()
    if not prompt:
        raise UsageError("no prompt given", hint='sdcli generate "a cat wearing a hat" (or - to read stdin)')
    return prompt


def generate(
    ctx: typer.Context,
    prompt: Annotated[str | None, typer.Argument(help="What to draw; - reads it from stdin.")] = None,
    negative: opt.Negative = "",
    model: opt.Model = DEFAULT_MODEL,
    revision: opt.Revision = None,
    variant: opt.Variant = None,
    scheduler: opt.Scheduler = None,
    schedule: opt.Schedule = None,
    steps: opt.Steps = 30,
    guidance: opt.Guidance = 7.0,
    width: opt.Width = None,
    height: opt.Height = None,
    seed: opt.Seed = None,
    count: opt.Count = 1,
    batch_size: opt.BatchSize = 1,
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    output: opt.Output = None,
    overwrite: opt.Overwrite = False,
    no_metadata: opt.NoMetadata = False,
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    offline: opt.Offline = False,
    debug: opt.Debug = False,
) -> None:
    """Make images from a text prompt."""
    out = Output(quiet=quiet, json=json_, debug=debug)
    ctx.meta["sdcli.debug"] = debug or ctx.meta.get("sdcli.debug", False)
    # 1. Validate everything before anything heavy is imported or loaded.
    model_request = ModelRequest(model, revision, variant, device, dtype, scheduler, schedule).validated()
    request = GenerationRequest(
        read_prompt(prompt), negative, steps, guidance, width, height, seed, count, batch_size
    ).validated()
    from sdcli import hub, jobs, outputs, pipelines
    from sdcli.commands._common import image_run

    plan = outputs.plan(output, count=count, overwrite=overwrite)
    paths = jobs.planned_paths(plan, request, pipelines.display_name(model_request.model), datetime.now())
    outputs.check_free(paths, plan)
    if offline:
        hub.set_offline()
    # 2. Load the model once, then 3. generate and write each image as soon as it is decoded.
    with image_run(out, model_request, total=count, steps=request.steps) as run:
        for written in jobs.generate_and_save(
            run.model, request, plan, paths, with_metadata=not no_metadata, on_step=run.on_step
        ):
            run.report(written)
