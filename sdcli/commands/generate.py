"""`sdcli generate`: text to image."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated

import typer

from sdcli import options as opt
from sdcli.commands import common
from sdcli.console import Output
from sdcli.errors import UsageError
from sdcli.requests import DEFAULT_MODEL


def generate(
    ctx: typer.Context,
    prompt: Annotated[str | None, typer.Argument(help="What to draw; - reads it from stdin.")] = None,
    negative: opt.Negative = "",
    from_: opt.FromImage = None,
    model: opt.Model = DEFAULT_MODEL,
    revision: opt.Revision = None,
    variant: opt.Variant = None,
    config: opt.Config = None,
    allow_pickle: opt.AllowPickle = False,
    lora: opt.Lora = None,
    embedding: opt.Embedding = None,
    scheduler: opt.Scheduler = None,
    schedule: opt.Schedule = None,
    clip_skip: opt.ClipSkip = 1,
    weighting: opt.Weighting = "a1111",
    no_long_prompts: opt.NoLongPrompts = False,
    steps: opt.Steps = 30,
    guidance: opt.Guidance = 7.0,
    width: opt.Width = None,
    height: opt.Height = None,
    seed: opt.Seed = None,
    count: opt.Count = 1,
    batch_size: opt.BatchSize = 1,
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    rng: opt.Rng = "cpu",
    offload: opt.Offload = "none",
    low_vram: opt.LowVram = False,
    vae_tiling: opt.VaeTiling = False,
    vae_slicing: opt.VaeSlicing = False,
    attention_slicing: opt.AttentionSlicing = False,
    channels_last: opt.ChannelsLast = False,
    compile: opt.Compile = False,
    tiny_vae: opt.TinyVae = None,
    quantize: opt.Quantize = None,
    oom_retry: opt.OomRetry = False,
    no_safety_checker: opt.NoSafetyChecker = False,
    keep_filtered: opt.KeepFiltered = False,
    prompts_file: opt.PromptsFile = None,
    grid: opt.Grid = False,
    grid_rows: opt.GridRows = None,
    output: opt.Output = None,
    overwrite: opt.Overwrite = False,
    no_metadata: opt.NoMetadata = False,
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    offline: opt.Offline = False,
    debug: opt.Debug = False,
) -> None:
    """Make images from a text prompt, or from each line of a prompts file."""
    values = dict(ctx.params)  # every parameter by name: --from merges stored values into these
    out = Output(quiet=quiet, json=json_, debug=debug)
    ctx.meta["sdcli.debug"] = debug or ctx.meta.get("sdcli.debug", False)
    # 1. Validate everything before anything heavy is imported or loaded.
    common.existing_file(from_)
    values, scheduler_state = common.apply_from_image(ctx, values)
    model_request = common.model_request(values, scheduler_state)

    from sdcli import distributed, hub, jobs, outputs, pipelines, prompt_files

    if prompts_file is not None:
        if prompt is not None:
            raise UsageError("give a PROMPT or --prompts-file, not both")
        defaults = common.generation_request({**values, "prompt": ""}, read=False)
        lines = prompt_files.parse(prompt_files.read_text(prompts_file), defaults)
    else:
        lines = [prompt_files.PromptLine(0, common.generation_request(values))]
    processes = distributed.current()
    if processes.device and model_request.device == "auto":
        model_request = replace(model_request, device=processes.device)
    total = sum(line.request.count for line in lines)
    plan = outputs.plan(output, count=total, overwrite=overwrite)
    name, started = pipelines.display_name(model_request.model), datetime.now()
    work = [
        jobs.Job(
            line.request, jobs.planned_paths(plan, line.request, name, started, line=line.line), line.line
        )
        for line in distributed.spread(lines, processes)
    ]
    outputs.check_free([path for job in work for path in job.paths], plan)
    if offline:
        hub.set_offline()
    # 2. Load the model once; 3. write each image as soon as it is decoded.
    common.execute(
        out,
        model_request,
        work,
        plan,
        processes=processes,
        with_metadata=not no_metadata,
        keep_filtered=keep_filtered,
        grid=grid,
        grid_rows=grid_rows,
    )
