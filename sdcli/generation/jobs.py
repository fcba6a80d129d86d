"""Generate requests' images and write them to disk: the loop every image command shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli.core.requests import GenerationRequest, ModelRequest
from sdcli.errors import UsageError
from sdcli.images import outputs

if TYPE_CHECKING:
    from sdcli.generation import engine
    from sdcli.model.pipelines import LoadedModel


@dataclass(frozen=True)
class JobInputs:
    """What an input image adds to a job, read when the job's turn comes (a folder of photos is never all
    in memory at once)."""

    pipeline_args: dict[str, Any]  # image, mask_image
    record: dict[str, Any]  # what the metadata says about them: init image name and hash, mask, resize
    width: int
    height: int
    finish: Callable[[Any], Any] | None = None  # turns a decoded image into the one written (inpaint)


@dataclass(frozen=True)
class Job:
    """One request's images and where they go: a prompt line, or one input image for img2img."""

    request: GenerationRequest
    paths: list[Path]
    line: int = 0  # line number in a prompts file (0: the command-line prompt)
    source: str | None = None  # the input image this job repaints, as the user named it
    read_inputs: Callable[[], JobInputs] | None = None
    remote: dict[str, Any] | None = None  # how a worker reads the same inputs (JSON; worker_inputs)


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, checked before the model loads: the model, each job's file names, and how to
    write them."""

    model: ModelRequest
    jobs: list[Job]
    outputs: outputs.OutputPlan
    with_metadata: bool = True
    keep_filtered: bool = False
    task: str | None = None  # load the model as this pipeline: img2img, inpaint
    bad_inputs: int = 0  # inputs already refused before loading
    use_worker: bool = False  # let a running `sdcli serve` do the work (no --no-worker)


@dataclass(frozen=True)
class Written:
    path: Path | None  # None: not written (blanked by the safety checker, or its input was unreadable)
    seed: int
    index: int
    line: int
    seconds: float
    record: dict[str, Any]
    notes: tuple[str, ...] = ()
    source: str | None = None
    error: str | None = None  # why this job's input could not be used

    def as_json(self) -> dict[str, Any]:
        found = {
            "path": str(self.path),
            "prompt": self.record.get("prompt"),
            "seed": self.seed,
            "index": self.index,
            "line": self.line,
            "seconds": round(self.seconds, 3),
            "parameters": self.record,
        }
        return {**found, "input": self.source} if self.source else found


def planned_paths(
    plan: outputs.OutputPlan,
    request: GenerationRequest,
    model_name: str,
    started: datetime,
    input_name: str = "",
    line: int = 0,
) -> list[Path]:
    return [
        outputs.render(
            plan,
            started=started,
            seed=seed,
            index=request.first_index + i,
            prompt=request.prompt,
            model=model_name,
            input_name=input_name,
            line=line,
        )
        for i, seed in enumerate(request.seeds)
    ]


def run(
    model: LoadedModel,
    jobs: list[Job],
    plan: outputs.OutputPlan,
    *,
    with_metadata: bool = True,
    keep_filtered: bool = False,
    on_step: engine.StepCallback | None = None,
) -> Iterator[Written]:
    """Each image is written (atomically) as soon as it is decoded, so an interrupted run keeps them all.
    An input that cannot be read any more is reported as one failed job; the others go on."""
    # Here, not at the top: planning a run (names, checks) imports this module too, and a warm worker's
    # client plans without generating anything.
    from sdcli.generation import engine
    from sdcli.images import metadata

    hires: LoadedModel | None = None  # the hires fix's img2img pipeline, built once for the whole run
    upscaler = None  # and its upscaler model, loaded once
    for job in jobs:
        request, inputs = job.request, None
        if job.read_inputs is not None:
            try:
                inputs = job.read_inputs()
            except UsageError as exc:
                yield Written(
                    None,
                    request.seeds[0],
                    request.first_index,
                    job.line,
                    0.0,
                    {},
                    (),
                    job.source,
                    exc.message,
                )
                continue
            request = replace(request, width=inputs.width, height=inputs.height)
        args = inputs.pipeline_args if inputs else None
        if request.hires_scale is not None and hires is None:
            hires, upscaler = engine.hires_model(model), engine.hires_upscaler(model, request)
        for result in engine.generate(
            model, request, inputs=args, on_step=on_step, hires=hires, upscaler=upscaler
        ):
            record = {**result.record, **(inputs.record if inputs else {})}
            image = inputs.finish(result.image) if inputs and inputs.finish else result.image
            path: Path | None = job.paths[result.index - request.first_index]
            if result.flagged:
                record["nsfw"] = True
                path = path.with_name(f"{path.stem}-nsfw{path.suffix}") if keep_filtered and path else None
            if path is not None:
                info = metadata.png_info(record) if with_metadata else None
                path = outputs.write_png(
                    image, path, info, overwrite=plan.overwrite, unique=not plan.explicit
                )
            yield Written(
                path, result.seed, result.index, job.line, result.seconds, record, result.notes, job.source
            )
