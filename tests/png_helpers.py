"""Reading back what the CLI wrote: pixels and the two metadata chunks of a PNG, and its NDJSON."""

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
