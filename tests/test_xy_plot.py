"""`--xy`: A1111's X/Y/Z plot: one ordinary image per combination and a labelled sheet per Z value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.core import xy_plot
from sdcli.core.image_args import ImageArgs
from sdcli.errors import UsageError
from tests.png_helpers import ndjson, pixels


def test_every_combination_is_an_image_and_the_sheet_is_labelled(cli, tiny_sd: Path) -> None:
    result = cli(
        "generate", "a cat", "-m", tiny_sd, "--seed", "4", "--xy", "steps=1,2", "--xy", "cfg=3,5", "--json"
    )
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    images = [line for line in lines if line["type"] == "image"]
    cells = [(i["parameters"]["steps"], i["parameters"]["guidance"], i["seed"]) for i in images]
    assert cells == [(1, 3.0, 4), (2, 3.0, 4), (1, 5.0, 4), (2, 5.0, 4)]  # X fastest, one seed
    (plot,) = [line for line in lines if line["type"] == "xy"]
    assert (plot["columns"], plot["rows"]) == (2, 2)
    tile = pixels(images[0]["path"])
    with Image.open(plot["path"]) as sheet:
        assert sheet.width > 2 * tile.shape[1] and sheet.height > 2 * tile.shape[0]  # room for labels
        record = json.loads(sheet.text["sdcli"])
        bottom_right = np.asarray(sheet.convert("RGB"))[-tile.shape[0] :, -tile.shape[1] :]
    assert record["xy"] == {
        "x": {"axis": "steps", "values": [1, 2]},
        "y": {"axis": "cfg", "values": [3.0, 5.0]},
    }
    assert np.array_equal(bottom_right, pixels(images[3]["path"]))
    # A cell is the image its settings make alone.
    alone = cli(
        "generate", "a cat", "-m", tiny_sd, "--seed", "4", "--steps", "2", "--cfg", "5", "-o", "a.png"
    )
    assert alone.exit_code == 0, alone.stderr
    assert np.array_equal(pixels("a.png"), pixels(images[3]["path"]))


def test_prompt_search_and_replace(cli, tiny_sd: Path) -> None:
    result = cli(
        "generate", "a cat at night", "-m", tiny_sd, "--steps", "1", "--xy", "prompt=cat,dog", "--json"
    )
    assert result.exit_code == 0, result.stderr
    images, _ = ndjson("\n".join(line for line in result.stdout.splitlines() if '"xy"' not in line))
    assert [i["prompt"] for i in images] == ["a cat at night", "a dog at night"]


@pytest.mark.parametrize(
    ("axis", "needle"),
    [
        ("colour=1,2", "expected AXIS=V1,V2"),
        ("steps=a,b", "must be a int"),
        ("cfg=1,nan", "finite"),
        ("strength=0.5", "has no --strength"),
        ("prompt=horse,cow", "is not in the prompt"),
    ],
)
def test_bad_axes_are_refused_before_loading(cli, axis: str, needle: str) -> None:
    result = cli("generate", "a cat", "-m", "no/such-model", "--xy", axis)
    assert result.exit_code == 2 and needle in result.stderr, result.stderr


def test_cells_in_the_module() -> None:
    axes = xy_plot.parse_all(["seed=1,2,3", 'negative="blurry, dark",none'])
    assert axes[1].values == ("blurry, dark", "none")
    cells = xy_plot.cells(ImageArgs(prompt="p"), axes)
    assert [(c.seed, c.negative) for c in cells] == [
        (1, "blurry, dark"),
        (2, "blurry, dark"),
        (3, "blurry, dark"),
        (1, "none"),
        (2, "none"),
        (3, "none"),
    ]
    assert xy_plot.layout(axes) == (3, 2, 1)
    with pytest.raises(UsageError, match="at most 3"):
        xy_plot.parse_all(["steps=1", "cfg=1", "seed=1", "width=8"])
    with pytest.raises(UsageError, match="more than 1000 cells"):
        xy_plot.parse_all(
            ["seed=" + ",".join(map(str, range(40))), "steps=" + ",".join(map(str, range(1, 40)))]
        )


def test_cells_of_several_images_with_dynamic_prompts(cli, tiny_sd: Path) -> None:
    """Each cell shows its first image, also when a dynamic prompt splits the cell into single images."""
    result = cli(
        "generate", "a {red|blue} cat", "-m", tiny_sd, "--seed", "3", "-c", "2", "--xy", "steps=1,2", "--json"
    )
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    images = [line for line in lines if line["type"] == "image"]
    assert [(i["index"], i["parameters"]["steps"]) for i in images] == [(0, 1), (1, 1), (2, 2), (3, 2)]
    (plot,) = [line for line in lines if line["type"] == "xy"]
    tile = pixels(images[2]["path"])
    with Image.open(plot["path"]) as sheet:
        right = np.asarray(sheet.convert("RGB"))[-tile.shape[0] :, -tile.shape[1] :]
    assert np.array_equal(right, tile)
