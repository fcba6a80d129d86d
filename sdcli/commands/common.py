"""What every image command shares after parsing: ImageArgs -> a run plan -> the write-and-report loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sdcli.commands.console import Output, Progress
from sdcli.core.image_args import ImageArgs
from sdcli.core.requests import GenerationRequest, ModelRequest
from sdcli.errors import CheckFailed, ExitCode, SdcliError, UsageError

if TYPE_CHECKING:
    from sdcli.core.xy_plot import Plot
    from sdcli.generation.distributed import Processes
    from sdcli.generation.jobs import JobInputs, RunPlan, Written


def remade(out: Output, args: ImageArgs) -> ImageArgs:
    """`--from IMAGE`, saying what in the image could not be used."""
    if args.from_ is None:  # the metadata readers cost a warm worker's client ~30 ms to import
        return args
    from sdcli.images import remake

    args, unusable = remake.apply(args)
    if unusable and args.from_ is not None:
        out.warn(f"{args.from_.name}: {'; '.join(unusable)}; ignored")
    return args


@dataclass(frozen=True)
class JobSpec:
    """What a command asks of one job before its file names are planned."""

    request: GenerationRequest
    line: int = 0  # line number in a prompts file (0: the command-line prompt)
    input_name: str = ""  # the input image's file stem, for `{input}`
    source: str | None = None  # the input image, as the user named it
    read_inputs: Callable[[], JobInputs] | None = None
    remote: dict[str, Any] | None = None  # how a worker reads the same inputs (JSON; worker_inputs)


def plan_run(
    args: ImageArgs,
    model: ModelRequest,
    specs: list[JobSpec],
    *,
    count: int,
    task: str | None = None,
    per_input: bool = False,
    bad_inputs: int = 0,
) -> RunPlan:
    """Names every file the run will write and refuses taken explicit names, before the model loads.
    `count`: how many images one name template serves (every process's; per input with several inputs)."""
    from datetime import datetime

    from sdcli.generation import jobs
    from sdcli.hub.settings import set_offline
    from sdcli.images import outputs
    from sdcli.model import quantization, schedulers
    from sdcli.model.sources import display_name

    default_name = outputs.INPUT_NAME if task else outputs.DEFAULT_NAME
    plan = outputs.plan(
        args.output, count=count, overwrite=args.overwrite, default_name=default_name, per_input=per_input
    )
    name, started = display_name(model.model), datetime.now()
    work = [
        jobs.Job(
            spec.request,
            jobs.planned_paths(plan, spec.request, name, started, input_name=spec.input_name, line=spec.line),
            spec.line,
            spec.source,
            spec.read_inputs,
            spec.remote,
        )
        for spec in specs
    ]
    outputs.check_free([path for job in work for path in job.paths], plan)
    if model.refiner is not None:
        check_refiner_models(model.model, model.refiner)
    if model.controlnets:  # every control image decodes, and canny's OpenCV is there, before loading
        from sdcli.images import control_images

        control_images.check(model.controlnets, model.control_preprocess, model.depth_model)
    if model.ip_adapters:  # every reference image decodes, before loading
        from sdcli.images import ip_images

        ip_images.check(model.ip_adapters)
    if model.scheduler_state is None:  # else the image's exact scheduler is used, whatever its name
        schedulers.check_names(model.scheduler, model.schedule)
    model = replace(model, quantize=quantization.validated(model.quantize))  # its package is installed
    if args.offline:
        set_offline()
    return jobs.RunPlan(
        model,
        work,
        plan,
        not args.no_metadata,
        args.keep_filtered,
        task,
        bad_inputs,
        # The worker protocol carries no ControlNets, IP-Adapters or refiners yet.
        not args.no_worker and not model.controlnets and not model.ip_adapters and model.refiner is None,
    )


def check_refiner_models(model: str, refiner: str) -> None:
    """Folders whose model_index.json names the wrong kinds fail here, before the base model loads (Hub
    ids and single files: when they are found, still before any weights load)."""
    from pathlib import Path

    from sdcli.model import pipelines, sources

    for spec, check in ((model, pipelines.check_refinable), (refiner, pipelines.check_refiner_class)):
        folder = Path(spec).expanduser()
        if not (folder / "model_index.json").is_file():
            continue
        try:
            name = str(sources.read_model_index(folder).get("_class_name", ""))
        except SdcliError:
            continue  # loading says what is wrong with the folder
        check(name, folder.name)


@dataclass
class Tally:
    written: list[Written] = field(default_factory=list)
    skipped: int = 0  # blanked by the safety checker
    bad_inputs: int = 0  # input images that could not be read


def execute(
    out: Output,
    plan: RunPlan,
    *,
    processes: Processes,
    grid: bool = False,
    grid_rows: int | None = None,
    xy: Plot | None = None,
) -> None:
    """Load the model once, write each job's images as they come, then report; Ctrl-C or SIGTERM stops
    between images, keeps what was written, and still prints the summary. A running worker (`sdcli serve`)
    loads and writes instead when there is one; what is printed is the same."""
    from sdcli.core import signals
    from sdcli.worker import client

    signals.install()
    began = time.perf_counter()
    tally = Tally(bad_inputs=plan.bad_inputs)
    total = sum(job.request.count for job in plan.jobs)
    worker = client.find(plan, processes) if plan.use_worker else None
    run = worker.run if worker is not None else run_here
    try:
        with out.progress() as progress:
            hooks = RunHooks(out, progress, total, plan)
            for result in run(plan, hooks):
                report(out, result, tally, processes)
                signals.check()
                hooks.image_done()
    except (KeyboardInterrupt, SdcliError) as exc:
        if isinstance(exc, KeyboardInterrupt) or exc.exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
            summarize(out, tally, total, began, processes, interrupted=True)
        raise
    if grid and tally.written and processes.is_main:
        write_grid(out, tally.written, grid_rows, with_metadata=plan.with_metadata)
    if xy and tally.written and processes.is_main:
        write_xy(out, tally.written, xy, with_metadata=plan.with_metadata)
    summarize(out, tally, total, began, processes)


class RunHooks:
    """What a run reports before and between its images: the same bars and notes whether the model runs
    in this process or in a worker."""

    def __init__(self, out: Output, progress: Progress, total: int, plan: RunPlan) -> None:
        self.out, self.progress, self.total, self.plan = out, progress, total, plan
        self._loading: object = None
        self._images: object = None
        self._steps: object = None

    def loading(self) -> None:
        self._loading = self.progress.task(f"loading {self.plan.model.model}")

    def loaded(self, notes: tuple[str, ...]) -> None:
        self.progress.done(self._loading)
        for note in notes:
            self.out.warn(note)
        self._images = self.progress.task("images", total=self.total)
        steps = self.plan.jobs[0].request.steps if self.plan.jobs else None
        self._steps = self.progress.task("denoising", total=steps)

    def step(self, done: int, of: int) -> None:
        from sdcli.core import signals

        signals.check()  # every denoising step: a lost signal stops the image in progress
        self.progress.update(self._steps, completed=done, total=of)

    def image_done(self) -> None:
        self.progress.update(self._images, advance=1)


def run_here(plan: RunPlan, hooks: RunHooks) -> Iterator[Written]:
    """The run in this process: load the model, then write each image as it is decoded."""
    from sdcli.core import signals
    from sdcli.generation import jobs
    from sdcli.model import pipelines

    hooks.loading()
    loaded = pipelines.load_model(plan.model)
    if plan.task is not None:
        loaded = pipelines.for_task(loaded, plan.task)
    signals.check()  # a signal during loading may have been caught by the libraries: stop here
    hooks.loaded(loaded.notes)
    yield from jobs.run(
        loaded,
        plan.jobs,
        plan.outputs,
        with_metadata=plan.with_metadata,
        keep_filtered=plan.keep_filtered,
        on_step=hooks.step,
    )


def report(out: Output, result: Written, tally: Tally, processes: Processes) -> None:
    for note in result.notes:
        out.warn(note)
    if result.error is not None:
        tally.bad_inputs += 1
        out.error(result.error)
        return
    if result.path is None:
        tally.skipped += 1
        out.warn(f"image {result.index} (seed {result.seed}) was blanked by the safety checker; not written")
        return
    tally.written.append(result)
    if out.json:
        shared = {"process": processes.index} if processes.count > 1 else {}
        out.data({"type": "image", **result.as_json(), **shared})
    else:
        out.result(str(result.path))


def write_grid(out: Output, written: list[Written], rows: int | None, *, with_metadata: bool) -> None:
    """A contact sheet of the run's images, with the first image's record (they share all but the seed)."""
    from sdcli.images import grid, metadata, outputs

    paths = [result.path for result in written if result.path is not None]
    sheet = grid.contact_sheet(paths, rows)
    n_rows, n_cols = grid.shape(len(paths), rows)
    layout = {"rows": n_rows, "columns": n_cols, "images": [p.name for p in paths]}
    info = metadata.png_info({**written[0].record, "grid": layout}) if with_metadata else None
    path = outputs.write_png(sheet, paths[0].parent / f"grid-{paths[0].stem}.png", info, unique=True)
    if out.json:
        out.data({"type": "grid", "path": str(path), "rows": n_rows, "columns": n_cols})
    else:
        out.info(f"grid: {path}")


def write_xy(out: Output, written: list[Written], plot: Plot, *, with_metadata: bool) -> None:
    """The X/Y plot: each cell's first image, one labelled sheet per Z value."""
    from PIL import Image

    from sdcli.core import xy_plot
    from sdcli.images import metadata, outputs

    axes, per_cell = plot.axes, plot.per_cell
    columns, rows, sheets = xy_plot.layout(axes)
    first_of_cell = {
        r.index // per_cell: r.path for r in written if r.path is not None and r.index % per_cell == 0
    }
    first = written[0]
    assert first.path is not None
    record = {**first.record, "xy": dict(zip("xyz", (axis.as_record() for axis in axes), strict=False))}
    info = metadata.png_info(record) if with_metadata else None
    for z in range(sheets):
        tiles: list[Any] = []
        for k in range(z * columns * rows, (z + 1) * columns * rows):
            path = first_of_cell.get(k)
            if path is None:
                tiles.append(None)
                continue
            with Image.open(path) as im:
                tiles.append(im.convert("RGB"))
        if not any(tiles):
            continue
        name = f"xy-{first.path.stem}" + (f"-z{z + 1}" if sheets > 1 else "") + ".png"
        path = outputs.write_png(xy_plot.sheet(tiles, axes), first.path.parent / name, info, unique=True)
        if out.json:
            out.data({"type": "xy", "path": str(path), "columns": columns, "rows": rows})
        else:
            out.info(f"xy plot: {path}")


def summarize(
    out: Output, tally: Tally, total: int, began: float, processes: Processes, *, interrupted: bool = False
) -> None:
    from sdcli.generation import distributed

    written, skipped, bad_inputs, interrupted_count, planned = distributed.total(
        processes, [len(tally.written), tally.skipped, tally.bad_inputs, int(interrupted), total]
    )
    if not processes.is_main:
        return
    seconds = time.perf_counter() - began
    if out.json:
        failures = skipped + bad_inputs
        summary = {"type": "summary", "images": written, "failures": failures, "seconds": round(seconds, 3)}
        out.data({**summary, "planned": planned, "interrupted": bool(interrupted_count)})
    if interrupted_count:
        out.warn(f"stopped after {written} of {planned} image(s); every written image is complete")
        return
    out.info(f"{written} image(s) written in {seconds:.1f}s")
    if bad_inputs:
        raise UsageError(f"{bad_inputs} input(s) could not be used (named above); the others were written")
    if skipped:
        raise CheckFailed(
            f"{skipped} image(s) were blanked by the safety checker and not written",
            hint="--keep-filtered writes them marked -nsfw; --no-safety-checker turns the checker off",
        )
