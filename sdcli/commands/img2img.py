"""`sdcli img2img PROMPT IMAGE...`: repaint existing images from a prompt.

The prompt comes first, as in `generate`, and the images last, so shell globs and `xargs` append them:
`sdcli img2img "a watercolor painting" photos/*.jpg`.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sdcli import options as opt
from sdcli.commands import common
from sdcli.console import Output
from sdcli.errors import ExitCode, UsageError
from sdcli.requests import DEFAULT_MODEL

if TYPE_CHECKING:
    from sdcli.jobs import JobInputs


def check_prompt(prompt: str, usage: str) -> None:
    """A forgotten prompt shifts the arguments: `img2img a.png b.png` would draw "a.png" onto b.png."""
    from sdcli.inputs import SUFFIXES

    if Path(prompt).suffix.lower() in SUFFIXES and Path(prompt).is_file():
        raise UsageError(f"the prompt {prompt!r} is an image file", hint=f"usage: {usage}")


def read_input(path: Path, width: int | None, height: int | None, resize: str) -> JobInputs:
    """One input, read again when its turn comes (it may have changed since it was checked)."""
    from sdcli import inputs
    from sdcli.jobs import JobInputs

    item = inputs.read_image(path)
    image = inputs.conform(item.image, width, height, resize)
    record = {"init_image": item.record, "resize": resize if width or height else None}
    return JobInputs({"image": image}, record, image.width, image.height)


def img2img(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to make of the images; - reads it from stdin.")],
    images: opt.InputImages,
    strength: opt.Strength = 0.75,
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
    steps: opt.Steps = 30,
    guidance: opt.Guidance = 7.0,
    clip_skip: opt.ClipSkip = 1,
    weighting: opt.Weighting = "a1111",
    no_long_prompts: opt.NoLongPrompts = False,
    width: opt.InputWidth = None,
    height: opt.InputHeight = None,
    resize: opt.Resize = "crop",
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
    common.existing_file(from_)
    values, scheduler_state = common.apply_from_image(ctx, dict(ctx.params))
    model_request = common.model_request(values, scheduler_state)
    request = common.generation_request(values)
    check_prompt(prompt, "sdcli img2img PROMPT IMAGE...")
    from sdcli import distributed, hub, inputs, jobs, outputs, pipelines

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
    work = [
        jobs.Job(
            request,
            jobs.planned_paths(plan, request, model_name, started, input_name=path.stem),
            source=str(path),
            read_inputs=partial(read_input, path, width, height, resize),
        )
        for path in ready
    ]
    outputs.check_free([p for job in work for p in job.paths], plan)
    if offline:
        hub.set_offline()
    # 2. Load the model once for all inputs, then 3. read, size and repaint each input in turn.
    common.execute(
        out,
        model_request,
        work,
        plan,
        processes=distributed.Processes(),
        with_metadata=not no_metadata,
        keep_filtered=keep_filtered,
        task="img2img",
        bad_inputs=len(problems),
    )
