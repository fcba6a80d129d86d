"""Pieces every image command shares: parameters -> requests, and the write-and-report loop."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from sdcli.adapters import EmbeddingSpec, LoraSpec
from sdcli.console import Output
from sdcli.errors import CheckFailed, ExitCode, SdcliError, UsageError
from sdcli.requests import GenerationRequest, MemoryOptions, ModelRequest

if TYPE_CHECKING:
    from sdcli.distributed import Processes
    from sdcli.jobs import Job, Written
    from sdcli.outputs import OutputPlan


def read_prompt(prompt: str | None) -> str:
    if prompt == "-":
        prompt = sys.stdin.read().strip()
    if not prompt:
        raise UsageError("no prompt given", hint='sdcli generate "a cat wearing a hat" (or - to read stdin)')
    return prompt


def given_on_command_line(ctx: typer.Context) -> set[str]:
    return {
        name
        for name in ctx.params
        if (source := ctx.get_parameter_source(name)) is not None and source.name == "COMMANDLINE"
    }


def apply_from_image(ctx: typer.Context, values: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """With --from IMAGE, stored parameters fill in what the command line did not give."""
    values = {**values, "_defaulted": left_at_default(ctx, ("steps", "guidance"))}
    if values.get("from_") is None:
        return values, None
    from sdcli import remake

    record = remake.read_record(values["from_"])
    given = given_on_command_line(ctx)
    # What the image stored is a given value, not a default a model family may replace.
    values["_defaulted"] = frozenset(n for n in values["_defaulted"] if record.get(n) is None)
    return remake.merge(record, values, given), remake.scheduler_state(record, given)


def left_at_default(ctx: typer.Context, names: tuple[str, ...]) -> frozenset[str]:
    """The parameters that hold the command's own default: not a flag, variable or config-file value."""
    return frozenset(
        name
        for name in names
        if name in ctx.params
        and (source := ctx.get_parameter_source(name)) is not None
        and source.name == "DEFAULT"
    )


def model_request(values: dict[str, Any], scheduler_state: Any = None) -> ModelRequest:
    memory = dict(
        offload=values["offload"],
        vae_tiling=values["vae_tiling"],
        vae_slicing=values["vae_slicing"],
        attention_slicing=values["attention_slicing"],
        channels_last=values["channels_last"],
        compile=values["compile"],
        tiny_vae=values["tiny_vae"],
        oom_retry=values["oom_retry"],
    )
    if values["low_vram"]:
        options = MemoryOptions.low_vram(
            **{k: v for k, v in memory.items() if v not in (False, None, "none")}
        )
    else:
        options = MemoryOptions(**memory)
    return ModelRequest(
        model=values["model"],
        revision=values["revision"],
        variant=values["variant"],
        device=values["device"],
        dtype=values["dtype"],
        scheduler=values["scheduler"],
        schedule=values["schedule"],
        memory=options,
        safety_checker=not values["no_safety_checker"],
        rng=values["rng"],
        scheduler_state=scheduler_state,
        # .get: commands without these options share this function
        config=values.get("config"),
        allow_pickle=values.get("allow_pickle", False),
        quantize=values.get("quantize"),
        loras=tuple(LoraSpec.parse(text) for text in values.get("lora") or ()),
        embeddings=tuple(EmbeddingSpec.parse(text) for text in values.get("embedding") or ()),
    ).validated()


def generation_request(values: dict[str, Any], *, read: bool = True) -> GenerationRequest:
    """With `read=False` the prompt is a placeholder (a prompts file supplies one per line)."""
    return GenerationRequest(
        prompt=read_prompt(values["prompt"]) if read else values["prompt"],
        negative=values["negative"],
        steps=values["steps"],
        guidance=values["guidance"],
        width=values["width"],
        height=values["height"],
        seed=values["seed"],
        count=values["count"],
        batch_size=values["batch_size"],
        strength=values.get("strength"),
        clip_skip=values.get("clip_skip", 1),
        weighting=values.get("weighting", "a1111"),
        long_prompts=not values.get("no_long_prompts", False),
        defaulted=values.get("_defaulted", frozenset()),
    ).validated()


@dataclass
class Tally:
    written: list[Path] = field(default_factory=list)
    skipped: int = 0  # blanked by the safety checker
    bad_inputs: int = 0  # input images that could not be read


def execute(
    out: Output,
    model_request: ModelRequest,
    jobs: list[Job],
    plan: OutputPlan,
    *,
    processes: Processes,
    with_metadata: bool = True,
    keep_filtered: bool = False,
    grid: bool = False,
    grid_rows: int | None = None,
    task: str | None = None,
    bad_inputs: int = 0,
) -> None:
    """Load the model once (as the `task` pipeline: img2img, inpaint), write each job's images as they come,
    then report; Ctrl-C or SIGTERM stops between images, keeps what was written, and still prints the
    summary. `bad_inputs` counts inputs already refused before loading."""
    from sdcli import jobs as jobs_module
    from sdcli import pipelines, signals

    signals.terminate_like_interrupt()
    began = time.perf_counter()
    tally = Tally(bad_inputs=bad_inputs)
    total = sum(job.request.count for job in jobs)
    try:
        with out.progress() as progress:
            loading = progress.task(f"loading {model_request.model}")
            loaded = pipelines.load_model(model_request)
            if task is not None:
                loaded = pipelines.for_task(loaded, task)
            progress.done(loading)
            for note in loaded.notes:
                out.warn(note)
            images_bar = progress.task("images", total=total)
            steps_bar = progress.task("denoising", total=jobs[0].request.steps if jobs else None)
            for result in jobs_module.run(
                loaded,
                jobs,
                plan,
                with_metadata=with_metadata,
                keep_filtered=keep_filtered,
                on_step=lambda done, of: progress.update(steps_bar, completed=done, total=of),
            ):
                report(out, result, tally, processes)
                progress.update(images_bar, advance=1)
    except (KeyboardInterrupt, SdcliError) as exc:
        if isinstance(exc, KeyboardInterrupt) or exc.exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
            summarize(out, tally, total, began, processes, interrupted=True)
        raise
    if grid and tally.written and processes.is_main:
        write_grid(out, tally.written, plan, grid_rows)
    summarize(out, tally, total, began, processes)


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
    tally.written.append(result.path)
    if out.json:
        shared = {"process": processes.index} if processes.count > 1 else {}
        out.data({"type": "image", **result.as_json(), **shared})
    else:
        out.result(str(result.path))


def write_grid(out: Output, paths: list[Path], plan: OutputPlan, rows: int | None) -> None:
    from sdcli import grid, metadata, outputs

    record = metadata.read_metadata(paths[0]).record or {}
    sheet = grid.contact_sheet(paths, rows)
    n_rows, n_cols = grid.shape(len(paths), rows)
    record = {**record, "grid": {"rows": n_rows, "columns": n_cols, "images": [p.name for p in paths]}}
    info = metadata.png_info(record) if record.get("prompt") else None
    path = outputs.write_png(sheet, paths[0].parent / f"grid-{paths[0].stem}.png", info, unique=True)
    if out.json:
        out.data({"type": "grid", "path": str(path), "rows": n_rows, "columns": n_cols})
    else:
        out.info(f"grid: {path}")


def summarize(
    out: Output, tally: Tally, total: int, began: float, processes: Processes, *, interrupted: bool = False
) -> None:
    from sdcli import distributed

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


def existing_file(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path
