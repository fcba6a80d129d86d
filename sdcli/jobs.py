"""Generate requests' images and write them to disk: the loop every image command shares."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sdcli import engine, metadata, outputs
from sdcli.pipelines import LoadedModel
from sdcli.requests import GenerationRequest


@dataclass(frozen=True)
class Job:
    """One request's images and where they go: a prompt line, or one input image for img2img."""

    request: GenerationRequest
    paths: list[Path]
    line: int = 0  # line number in a prompts file (0: the command-line prompt)
    inputs: dict[str, Any] | None = None  # extra pipeline arguments: init image, mask
    extra_record: dict[str, Any] | None = None  # metadata about those inputs


@dataclass(frozen=True)
class Written:
    path: Path | None  # None: the safety checker blanked the image and it was not written
    seed: int
    index: int
    line: int
    seconds: float
    record: dict[str, Any]
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "prompt": self.record.get("prompt"),
            "seed": self.seed,
            "index": self.index,
            "line": self.line,
            "seconds": round(self.seconds, 3),
            "parameters": self.record,
        }


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
    """Each image is written (atomically) as soon as it is decoded, so an interrupted run keeps them all."""
    for job in jobs:
        for result in engine.generate(model, job.request, inputs=job.inputs, on_step=on_step):
            record = {**result.record, **(job.extra_record or {})}
            path: Path | None = job.paths[result.index - job.request.first_index]
            if result.flagged:
                record["nsfw"] = True
                path = path.with_name(f"{path.stem}-nsfw{path.suffix}") if keep_filtered and path else None
            if path is not None:
                info = metadata.png_info(record) if with_metadata else None
                path = outputs.write_png(
                    result.image, path, info, overwrite=plan.overwrite, unique=not plan.explicit
                )
            yield Written(path, result.seed, result.index, job.line, result.seconds, record, result.notes)
