"""`--controlnet MODEL:IMAGE[:SCALE[:START:END]]` and `--control-preprocess`, parsed and checked before any
model loads. Pure string and file-existence work: no torch, no diffusers, no image decoding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sdcli.core.specs import is_number, refuse_pickle
from sdcli.errors import UsageError

PREPROCESSORS = ("none", "canny", "depth")
# --control-preprocess depth's estimator when --depth-model is not given: Depth Anything V2's smallest (25M
# parameters, Apache-2.0; Base and Large are CC-BY-NC), the model A1111's `depth_anything_v2` module runs.
DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
USAGE = "--controlnet MODEL[@MODE]:IMAGE[:SCALE[:START:END]], e.g. ./control-canny:edges.png:0.8:0:0.6"
# ControlNet-Union's conditions, as xinsir/controlnet-union-sdxl-1.0 (ProMax: with 7) numbers them; each
# name also as A1111's ControlNet extension writes it (`Union Control Type:`).
UNION_MODES = {
    "openpose": 0,
    "pose": 0,
    "depth": 1,
    "hed": 2,
    "scribble": 2,
    "softedge": 2,
    "pidi": 2,
    "canny": 3,
    "lineart": 3,
    "mlsd": 3,
    "normal": 4,
    "segment": 5,
    "seg": 5,
    "tile": 6,
    "repaint": 7,
    "inpaint": 7,
}
A1111_UNION_TYPES = (
    "OpenPose",
    "Depth",
    "Hed/Pidi/Scribble/Ted",
    "Canny/Lineart/Anime_Lineart/Mlsd",
    "Normal",
    "Segment",
    "Tile",
    "Repaint",
)


@dataclass(frozen=True)
class ControlNetSpec:
    source: str  # a local diffusers ControlNet folder, a single .safetensors file, or a cached Hub id
    image: Path  # the control image (the control map itself with --control-preprocess none)
    scale: float = 1.0  # controlnet_conditioning_scale
    start: float = 0.0  # control_guidance_start: the fraction of the steps where the control begins
    end: float = 1.0  # control_guidance_end
    mode: str | None = None  # a ControlNet-Union's condition (`MODEL@canny`): a UNION_MODES name

    @classmethod
    def parse(cls, text: str) -> ControlNetSpec:
        """The numbers are the trailing `:`-separated fields that read as numbers (none, one: SCALE, or
        three: SCALE:START:END); what is left is MODEL:IMAGE, split at the `:` after which an existing file
        is named (else the first `:`): POSIX paths, so a Hub id or a folder never holds a `:`."""
        fields = text.split(":")
        numbers: list[float] = []
        while len(fields) > 2 and len(numbers) < 3 and is_number(fields[-1]):
            numbers.insert(0, float(fields.pop()))
        if len(numbers) == 2:
            raise UsageError(
                f"--controlnet {text}: give SCALE or SCALE:START:END, not two numbers", hint=USAGE
            )
        if len(fields) < 2:
            raise UsageError(f"--controlnet {text}: expected MODEL:IMAGE", hint=USAGE)
        splits = [(":".join(fields[:i]), ":".join(fields[i:])) for i in range(1, len(fields))]
        source, image = next(((m, i) for m, i in splits if Path(i).expanduser().is_file()), splits[0])
        if not source.strip() or not image.strip():
            raise UsageError(f"--controlnet {text}: expected MODEL:IMAGE", hint=USAGE)
        scale, start, end = (numbers + [0.0, 1.0])[:3] if len(numbers) == 1 else (numbers or [1.0, 0.0, 1.0])
        source, mode = _split_mode(source)
        return cls(source, Path(image).expanduser(), scale, start, end, mode)

    @property
    def mode_index(self) -> int | None:
        return None if self.mode is None else UNION_MODES[self.mode]

    def validated(self, allow_pickle: bool = False) -> ControlNetSpec:
        what = f"--controlnet {self.source}:{self.image}"
        for name, value in (("scale", self.scale), ("start", self.start), ("end", self.end)):
            if not math.isfinite(value):
                raise UsageError(f"{what}: the {name} must be a finite number, got {value}")
        if not (0 <= self.start <= 1 and 0 <= self.end <= 1):
            raise UsageError(
                f"{what}: START and END must be between 0 and 1, got {self.start:g}:{self.end:g}"
            )
        if self.start > self.end:
            raise UsageError(f"{what}: START {self.start:g} is after END {self.end:g}")
        if not self.image.exists():
            raise UsageError(f"{what}: {self.image}: no such file")
        if not self.image.is_file():
            raise UsageError(f"{what}: {self.image}: not a file")
        refuse_pickle(self.source, allow_pickle, "--controlnet")
        path = Path(self.source).expanduser()
        looks_local = self.source.startswith((".", "/", "~")) or self.source.lower().endswith(".safetensors")
        if looks_local and not path.exists():
            raise UsageError(f"{what}: {self.source}: no such file or folder")
        return self


def _split_mode(source: str) -> tuple[str, str | None]:
    """`MODEL@MODE`: a Hub id never holds `@`, and a local path that does (and exists) is kept whole."""
    model, at, mode = source.rpartition("@")
    if not at or Path(source).expanduser().exists():
        return source, None
    name = mode.strip().lower()
    if name.isdigit():  # the number a diffusers script passes as control_mode
        name = next((k for k, v in UNION_MODES.items() if v == int(name)), name)
    if name not in UNION_MODES or not model.strip():
        raise UsageError(
            f"--controlnet {source}: {mode!r} is not a ControlNet-Union mode",
            hint="MODEL@MODE:IMAGE with MODE one of " + ", ".join(UNION_MODES),
        )
    return model, name


def parse_all(
    texts: tuple[str, ...], preprocess: str, allow_pickle: bool = False, depth_model: str | None = None
) -> tuple[ControlNetSpec, ...]:
    if preprocess not in PREPROCESSORS:
        raise UsageError(f"--control-preprocess {preprocess!r} is not one of {', '.join(PREPROCESSORS)}")
    if depth_model is not None:
        check_depth_model(depth_model, preprocess)
    return tuple(ControlNetSpec.parse(text).validated(allow_pickle) for text in texts)


def check_depth_model(source: str, preprocess: str) -> None:
    """`--depth-model`'s shape: it only means something with `--control-preprocess depth` (said, not
    ignored), and a path that looks local must exist. What the folder holds is the model layer's check."""
    if preprocess != "depth":
        raise UsageError(
            f"--depth-model {source}: it picks the estimator of --control-preprocess depth, not {preprocess}",
            hint="add --control-preprocess depth, or drop --depth-model",
        )
    if not source.strip():
        raise UsageError("--depth-model is empty")
    looks_local = source.startswith((".", "/", "~")) or source.count("/") > 1
    path = Path(source).expanduser()
    if looks_local and not path.exists():
        raise UsageError(f"--depth-model {source}: no such folder")
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"--depth-model {source}: not a folder",
            hint="give a transformers depth-estimation folder (config.json, preprocessor_config.json, "
            "*.safetensors) or a Hub id",
        )
