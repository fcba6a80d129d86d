"""Where a model's files are, what its `model_index.json` says, and the name metadata records for it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from sdcli.errors import ModelUnavailable
from sdcli.hub import selection

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are on this machine, and the name metadata records for it (never a path)."""

    name: str
    folder: Path
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    model_hash: str | None = None
    checkpoint: Path | None = None  # a single-file checkpoint; `folder` then holds only its family's configs
    config: str | None = None  # the name of that config folder or Hub id, for the record
    component: str | None = None  # "transformer": the checkpoint is that component of `folder`'s pipeline

    @cached_property
    def model_index(self) -> dict[str, Any]:
        """Read once per load: the pipeline class, its components and its safety checker all come from it."""
        return read_model_index(self.folder)

    @property
    def pipeline_class(self) -> str:
        return str(self.model_index.get("_class_name", ""))


def read_model_index(folder: Path) -> dict[str, Any]:
    hint = "point --model at a folder saved with save_pretrained, or a Hub repo id"
    try:
        return selection.read_model_index(folder / selection.MODEL_INDEX)
    except OSError as exc:
        raise ModelUnavailable(
            f"{folder.name} has no readable model_index.json: not a diffusers pipeline folder", hint=hint
        ) from exc
    except ValueError as exc:  # a list, say: dict() of it failed as "unexpected", or passed as {}
        raise ModelUnavailable(
            f"{folder.name}/model_index.json {exc}: not a diffusers pipeline folder", hint=hint
        ) from exc


def display_name(model: str) -> str:
    """The name metadata and file names use: a Hub id as is, a local folder or file by its own name."""
    path = Path(model).expanduser()
    if path.exists():
        return path.resolve().stem if path.is_file() else path.resolve().name
    return model
