"""Prompt files (plain and JSON Lines), their seeds, NDJSON output, and --grid contact sheets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from sdcli.core.requests import GenerationRequest
from sdcli.errors import UsageError
from sdcli.generation import prompt_files
from tests.png_helpers import ndjson

# --- prompt files ----------------------------------------------------------------------------------------


def test_plain_and_json_lines_with_predictable_seeds(cli, tiny_sd: Path) -> None:
    Path("p.txt").write_text(
        '# a comment\n\na cat\n{"prompt": "a dog", "seed": 7, "negative": "fog", "steps": 2}\n  a bird  \n'
    )
    result = cli(
        "generate",
        "--prompts-file",
        "p.txt",
        "-m",
        tiny_sd,
        "--steps",
        "1",
        "--seed",
        "100",
        "-c",
        "2",
        "--json",
        "-o",
        "out/",
    )
    assert result.exit_code == 0, result.stderr
    images, summary = ndjson(result.stdout)
    assert summary["images"] == 6 and summary["failures"] == 0
    got = [(i["line"], i["prompt"], i["seed"], i["index"]) for i in images]
    assert got == [
        (3, "a cat", 100, 0),
        (3, "a cat", 101, 1),
        (4, "a dog", 7, 0),
        (4, "a dog", 8, 1),
        (5, "a bird", 104, 0),
        (5, "a bird", 105, 1),
    ]
    assert [i["parameters"]["steps"] for i in images] == [1, 1, 2, 2, 1, 1]
    assert images[2]["parameters"]["negative"] == "fog"
    assert len(list(Path("out").glob("*.png"))) == 6


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('a cat\n{"prompt": "x", "colour": 3}\n', "line 2: unknown key(s) colour"),
        ('a cat\n\n{"prompt": "x", "steps": "many"}\n', "line 3: steps must be int"),
        ('{"prompt": "x", "width": 30}\n', "line 1: --width must be a positive multiple of 8"),
        ('{"prompt": "x"\n', "line 1: not valid JSON"),
        ('{"seed": 1}\n', "line 1: no prompt"),
        ("# only comments\n\n", "holds no prompts"),
    ],
)
def test_bad_lines_are_reported_before_any_model_loads(cli, text: str, needle: str) -> None:
    Path("p.txt").write_text(text)
    result = cli("generate", "--prompts-file", "p.txt", "-m", "./no/such/model")  # would be exit 3 if loaded
    assert result.exit_code == 2, result.stderr
    assert needle in result.stderr and result.stdout == ""


def test_prompts_from_stdin_and_prompt_plus_file_is_refused(cli, tiny_sd: Path) -> None:
    result = cli("generate", "--prompts-file", "-", "-m", tiny_sd, "--steps", "1", "-o", "o/", input="a\nb\n")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    both = cli("generate", "a cat", "--prompts-file", "-", input="a\n")
    assert both.exit_code == 2 and "not both" in both.stderr


def test_seeds_continue_across_lines_in_the_module() -> None:
    defaults = GenerationRequest("", count=3, seed=10).validated()
    lines = prompt_files.parse("a\nb\n", defaults)
    assert [line.request.seeds for line in lines] == [[10, 11, 12], [13, 14, 15]]
    with pytest.raises(UsageError, match="line 1"):
        prompt_files.parse('{"prompt": "a", "count": 0}', defaults)


def test_grid_is_a_contact_sheet_with_the_run_in_its_metadata(cli, tiny_sd: Path) -> None:
    result = cli(
        "generate", "a cat", "-m", tiny_sd, "--steps", "1", "-c", "3", "--grid", "-o", "g/", "--json"
    )
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    (grid,) = [line for line in lines if line["type"] == "grid"]
    assert (grid["rows"], grid["columns"]) == (2, 2)
    with Image.open(grid["path"]) as im:
        assert im.size == (128, 128)
        record = json.loads(im.text["sdcli"])
    images = [Path(line["path"]).name for line in lines if line["type"] == "image"]
    assert record["grid"]["images"] == images and record["prompt"] == "a cat"
    one_row = cli(
        "generate",
        "a cat",
        "-m",
        tiny_sd,
        "--steps",
        "1",
        "-c",
        "3",
        "--grid",
        "--grid-rows",
        "1",
        "-o",
        "h/",
        "--seed",
        "1",
    )
    assert one_row.exit_code == 0, one_row.stderr
    (sheet,) = Path("h").glob("grid-*.png")
    with Image.open(sheet) as im:
        assert im.size == (192, 64)
