"""A contact sheet of a run's images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def shape(count: int, rows: int | None = None) -> tuple[int, int]:
    """(rows, columns): near-square, wider than tall, unless the rows are given."""
    if rows is None:
        columns = math.ceil(math.sqrt(count))
        return math.ceil(count / columns), columns
    rows = max(1, min(rows, count))
    return rows, math.ceil(count / rows)


def contact_sheet(paths: list[Path], rows: int | None = None) -> Any:
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(path) as im:
            images.append(im.convert("RGB"))
    n_rows, n_cols = shape(len(images), rows)
    width = max(im.width for im in images)
    height = max(im.height for im in images)
    sheet = Image.new("RGB", (n_cols * width, n_rows * height), "black")
    for i, im in enumerate(images):
        sheet.paste(im, ((i % n_cols) * width, (i // n_cols) * height))
    return sheet
