"""Generate a request's images and write them to disk: the loop every image command shares."""

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
class Written:
    path: Path | None  # None: the safety checker blanked the image and it was not written
    seed: int
    index: int
    seconds: float
    record: dict[str, Any]
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "seed": self.seed,
            "index": self.index,
            "seconds": round(self.seconds, 3),
            "parameters": self.record,
        }


def planned_paths(
    plan: outputs.OutputPlan,
    request: GenerationRequest,
    model_name: str,
    started: datetime,
    input_name: str = "",
) -> list[Path]:
    return [
        outputs.render(
            plan,
            started=started,
            seed=seed,
            index=i,
            prompt=request.prompt,
            model=model_name,
            input_name=input_name,
        )
        for i, seed in enumerate(request.seeds)
    ]


def generate_and_save(
    model: LoadedModel,
    request: GenerationRequest,
    plan: outputs.OutputPlan,
    paths: list[Path],
    *,
    with_metadata: bool = True,
    keep_filtered: bool = False,
    inputs: dict[str, Any] | None = None,
    extra_record: dict[str, Any] | None = None,
    on_step: engine.StepCallback | None = None,
) -> Iterator[Written]:
    for result in engine.generate(model, request, inputs=inputs, on_step=on_step):
        record = {**result.record, **(extra_record or {})}
        path: Path | None = paths[result.index]
        if result.flagged:
            record["nsfw"] = True
            path = path.with_name(f"{path.stem}-nsfw{path.suffix}") if keep_filtered and path else None
        if path is not None:
            info = metadata.png_info(record) if with_metadata else None
            path = outputs.write_png(
                result.image, path, info, overwrite=plan.overwrite, unique=not plan.explicit
            )
        yield Written(path, result.seed, result.index, result.seconds, record, result.notes)
