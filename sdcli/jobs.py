"""Generate a request's images and write them to disk: the loop every image command shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sdcli import engine, metadata, outputs
from sdcli.pipelines import LoadedModel
from sdcli.requests import GenerationRequest


@dataclass(frozen=True)
class Written:
    path: Path
    seed: int
    index: int
    seconds: float
    record: dict[str, Any]

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
    inputs: dict[str, Any] | None = None,
    extra_record: dict[str, Any] | None = None,
    on_step: engine.StepCallback | None = None,
    finish: Callable[[Any], Any] | None = None,
) -> Iterator[Written]:
    """`finish`, when given, turns each decoded image into the one written (inpaint pastes the kept area)."""
    for result in engine.generate(model, request, inputs=inputs, on_step=on_step):
        record = {**result.record, **(extra_record or {})}
        info = metadata.png_info(record) if with_metadata else None
        image = finish(result.image) if finish else result.image
        path = outputs.write_png(
            image, paths[result.index], info, overwrite=plan.overwrite, unique=not plan.explicit
        )
        yield Written(path=path, seed=result.seed, index=result.index, seconds=result.seconds, record=record)
