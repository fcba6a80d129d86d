"""`sdcli inpaint IMAGE MASK PROMPT`: repaint the white part of a mask, keep the black part."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from sdcli import options as opt
from sdcli.commands import common
from sdcli.console import Output
from sdcli.errors import UsageError
from sdcli.requests import DEFAULT_MODEL


def inpaint(
    ctx: typer.Context,
    image: opt.InputImage,
    mask: opt.Mask,
    prompt: Annotated[str, typer.Argument(help="What to paint in the white area; - reads it from stdin.")],
    strength: opt.Strength = 0.75,
    mask_blur: opt.MaskBlur = 4,
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
    """Repaint the white area of MASK in IMAGE from a prompt; the black area is kept as it is."""
    out = Output(quiet=quiet, json=json_, debug=debug)
    ctx.meta["sdcli.debug"] = debug or ctx.meta.get("sdcli.debug", False)
    # 1. Validate everything, and read both files, before anything heavy is imported or loaded.
    common.existing_file(from_)
    values, scheduler_state = common.apply_from_image(ctx, dict(ctx.params))
    model_request = common.model_request(values, scheduler_state)
    request = common.generation_request(values)
    if mask_blur < 0:
        raise UsageError(f"--mask-blur must be 0 or more, got {mask_blur}")
    from sdcli import distributed, hub, inputs, jobs, outputs, pipelines

    inputs.check_resize(resize)
    source = inputs.read_image(Path(image))
    inputs.check_size(source, width, height)
    painted = inputs.read_mask(Path(mask))
    init, mask_image = inputs.prepare_inpaint(source.image, painted.image, width, height, resize, mask_blur)
    record = {
        "init_image": source.record,
        "mask": painted.record,
        "mask_blur": mask_blur,
        "resize": resize if width or height else None,
    }
    # The kept (black) area is pasted back from the input, as A1111 does, so it stays exactly the input.
    ready = jobs.JobInputs(
        {"image": init, "mask_image": mask_image},
        record,
        init.width,
        init.height,
        inputs.paste_back(init, mask_image),
    )
    plan = outputs.plan(output, count=count, overwrite=overwrite, default_name=outputs.INPUT_NAME)
    model_name = pipelines.display_name(model_request.model)
    paths = jobs.planned_paths(plan, request, model_name, datetime.now(), input_name=source.path.stem)
    outputs.check_free(paths, plan)
    if offline:
        hub.set_offline()
    # 2. Load the model once, then 3. repaint.
    job = jobs.Job(request, paths, source=str(source.path), read_inputs=lambda: ready)
    common.execute(
        out,
        model_request,
        [job],
        plan,
        processes=distributed.Processes(),
        with_metadata=not no_metadata,
        keep_filtered=keep_filtered,
        task="inpaint",
    )
