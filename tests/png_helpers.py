"""Reading back what the CLI wrote: pixels and the two metadata chunks of a PNG, and its NDJSON; and the
arguments of the plain diffusers call whose image the pixels are compared with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def params_and_record(path: str | Path) -> tuple[str, dict]:
    """The A1111 `parameters` text and sdcli's JSON record."""
    with Image.open(path) as im:
        return im.text["parameters"], json.loads(im.text["sdcli"])


def ndjson(text: str) -> tuple[list[dict], dict]:
    """`--json` output: the image lines, then the summary line."""
    *images, summary = [json.loads(line) for line in text.splitlines()]
    assert summary["type"] == "summary" and all(i["type"] == "image" for i in images)
    return images, summary


def script_args(*, steps: int, seed: int, guidance: float = 7.0, width: int = 64, height: int = 64) -> dict:
    """A diffusers pipeline call's arguments for `--steps`, `--seed`, `--guidance` and the size the CLI was
    given (7.0 is sdcli's default CFG), with the CPU generator the CLI seeds."""
    import torch

    return {
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "width": width,
        "height": height,
        "generator": torch.Generator("cpu").manual_seed(seed),
    }
