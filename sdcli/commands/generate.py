"""`sdcli generate`: text to image."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated

import typer

from sdcli import options as opt
from sdcli.commands import common
from sdcli.console import Output
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
    oom_retry: opt.OomRetry = False,
    no_safety_checker: opt.NoSafetyChecker = False,
    keep_filtered: opt.KeepFiltered = False,
    output: opt.Output = None,
    overwrite: opt.Overwrite = False,
    no_metadata: opt.NoMetadata = False,
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    offline: opt.Offline = False,
    debug: opt.Debug = False,
) -> None:
    """Make images from a text prompt."""
    values = dict(ctx.params)  # every parameter by name: --from merges stored values into these
    out = Output(quiet=quiet, json=json_, debug=debug)
    ctx.meta["sdcli.debug"] = debug or ctx.meta.get("sdcli.debug", False)
    # 1. Validate everything before anything heavy is imported or loaded.
    common.existing_file(from_)
    values, scheduler_state = common.apply_from_image(ctx, values)
    model_request = common.model_request(values, scheduler_state)
    request = common.generation_request(values)

    from sdcli import hub, jobs, outputs, pipelines

    plan = outputs.plan(output, count=request.count, overwrite=overwrite)
    paths = jobs.planned_paths(plan, request, pipelines.display_name(model_request.model), datetime.now())
    outputs.check_free(paths, plan)
    if offline:
        hub.set_offline()
    # 2. Load the model once, then 3. generate and write each image as soon as it is decoded.
    began = time.perf_counter()
    with out.progress() as progress:
        loading = progress.task(f"loading {model_request.model}")
        loaded = pipelines.load_model(model_request)
        progress.done(loading)
        for note in loaded.notes:
            out.warn(note)
        steps_bar = progress.task("denoising", total=request.steps)
        images = jobs.generate_and_save(
            loaded,
            request,
            plan,
            paths,
            with_metadata=not no_metadata,
            keep_filtered=keep_filtered,
            on_step=lambda done, total: progress.update(steps_bar, completed=done, total=total),
        )
        written, skipped = common.write_images(out, images, request.count, progress)
    common.finish(out, written, skipped, began)
