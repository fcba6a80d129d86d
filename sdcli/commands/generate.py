"""`sdcli generate`: text to image."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

import typer

from sdcli.commands import common
from sdcli.commands import options as opt
from sdcli.commands.console import Output
from sdcli.core.image_args import ImageArgs
from sdcli.core.requests import REFINER_SWITCH
from sdcli.errors import SdcliError, UsageError

if TYPE_CHECKING:
    from sdcli.core.xy_plot import Axis
    from sdcli.generation.prompt_files import PromptLine


@opt.image_options
def generate(
    ctx: typer.Context,
    args: ImageArgs,
    prompt: Annotated[str | None, typer.Argument(help="What to draw; - reads it from stdin.")] = None,
    prompts_file: opt.PromptsFile = None,
    wildcards: opt.Wildcards = None,
    xy: opt.XY = None,
    grid: opt.Grid = False,
    grid_rows: opt.GridRows = None,
    hires_scale: opt.HiresScale = None,
    hires_steps: opt.HiresSteps = 0,
    hires_strength: opt.HiresStrength = 0.7,
    hires_upscaler: opt.HiresUpscaler = "latent",
    refiner: opt.Refiner = None,
    refiner_switch: opt.RefinerSwitch = REFINER_SWITCH,
) -> None:
    """Make images from a text prompt, or from each line of a prompts file."""
    out = Output(quiet=args.quiet, json=args.json_)
    # 1. Validate everything before anything heavy is imported or loaded.
    args = common.remade(out, args)
    model_request = args.model_request()

    from sdcli.core import xy_plot
    from sdcli.generation import distributed, dynamic_prompts, prompt_files

    axes = xy_plot.parse_all(xy or [])
    if prompts_file is not None:
        if args.prompt is not None:
            raise UsageError("give a PROMPT or --prompts-file, not both")
        if axes:
            raise UsageError("--xy plots one PROMPT, not a --prompts-file")
        defaults = args.generation_request(prompt="")
        lines = prompt_files.parse(prompt_files.read_text(prompts_file), defaults)
    elif axes:
        lines = xy_lines(args, axes)
    else:
        lines = [prompt_files.PromptLine(0, args.generation_request())]
    lines = dynamic_prompts.expand(lines, wildcards)  # {a|b} and __name__: one line per image, each resolved
    processes = distributed.current()
    if processes.device and model_request.device == "auto":
        model_request = replace(model_request, device=processes.device)
    work = [common.JobSpec(line.request, line=line.line) for line in distributed.spread(lines, processes)]
    from sdcli.images import upscale

    upscaler = None
    if args.hires_scale is not None:
        check_hires_model(model_request.model)
        upscaler = upscale.parse_hires_upscaler(args.hires_upscaler)  # a model: found and usable, not loaded
    plan = common.plan_run(args, model_request, work, count=sum(line.request.count for line in lines))
    if upscaler is not None and upscaler.kind != upscale.LANCZOS:
        # A warm worker would look for a local upscaler from its own folder, and load it for every request.
        plan = replace(plan, use_worker=False)
    # 2. Load the model once; 3. write each image as soon as it is decoded.
    sheet = xy_plot.Plot(axes, per_cell=args.count) if axes else None
    common.execute(out, plan, processes=processes, grid=grid, grid_rows=grid_rows, xy=sheet)


def check_hires_model(model: str) -> None:
    """A model folder whose model_index.json names another family fails before loading (else: after)."""
    from pathlib import Path

    from sdcli.model import families, sources

    folder = Path(model).expanduser()
    if not (folder / "model_index.json").is_file():
        return
    try:
        name = str(sources.read_model_index(folder).get("_class_name", ""))
    except SdcliError:
        return  # loading says what is wrong with the folder
    family = families.of_class(name)
    if family not in (families.SD, families.SDXL):
        raise UsageError(f"hires fix is for SD 1.x/2.x and SDXL; {folder.name} is {family.label} ({name})")


def xy_lines(args: ImageArgs, axes: list[Axis]) -> list[PromptLine]:
    """One line per cell, all at the first cell's seed unless seed is an axis; cell k's images come k-th."""
    from sdcli.core import xy_plot
    from sdcli.generation import prompt_files

    first = args.generation_request()  # reads a "-" prompt once and draws the seed once
    args = replace(args, prompt=first.prompt, seed=args.seed if args.seed is not None else first.seed)
    return [
        prompt_files.PromptLine(0, replace(cell.generation_request(), first_index=k * first.count))
        for k, cell in enumerate(xy_plot.cells(args, axes))
    ]
