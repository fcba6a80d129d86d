"""Dynamic prompts: `{a|b}` variants and `__name__` wildcard files, resolved per image by its seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sdcli.core.requests import GenerationRequest
from sdcli.generation import dynamic_prompts
from sdcli.generation.prompt_files import PromptLine
from tests.png_helpers import ndjson, pixels

COLOURS = ("red", "green", "blue")


def test_each_image_gets_its_own_resolved_prompt_and_remakes_alone(cli, tiny_sd: Path) -> None:
    template = "a {red|green|blue} cat, (soft light:1.2)"
    result = cli("generate", template, "-m", tiny_sd, "--steps", "1", "--seed", "3", "-c", "4", "--json")
    assert result.exit_code == 0, result.stderr
    images, summary = ndjson(result.stdout)
    assert summary["images"] == 4
    prompts = [image["parameters"]["prompt"] for image in images]
    for prompt in prompts:
        assert prompt in {f"a {c} cat, (soft light:1.2)" for c in COLOURS}
    assert {image["parameters"]["prompt_template"] for image in images} == {template}
    assert [image["seed"] for image in images] == [3, 4, 5, 6]
    # Image 2 is the image its resolved prompt makes alone, at its own seed.
    alone = cli("generate", prompts[2], "-m", tiny_sd, "--steps", "1", "--seed", "5", "-o", "alone.png")
    assert alone.exit_code == 0, alone.stderr
    assert np.array_equal(pixels(images[2]["path"]), pixels("alone.png"))
    # The same seeds choose the same prompts again.
    again = cli("generate", template, "-m", tiny_sd, "--steps", "1", "--seed", "3", "-c", "4", "--json")
    assert [image["parameters"]["prompt"] for image in ndjson(again.stdout)[0]] == prompts


def test_wildcard_files(cli, tiny_sd: Path, tmp_path: Path) -> None:
    folder = tmp_path / "wild"
    folder.mkdir()
    (folder / "animal.txt").write_text("fox\nowl\n", encoding="utf-8")
    result = cli(
        "generate", "a __animal__", "-m", tiny_sd, "--steps", "1", "-c", "2", "--wildcards", folder, "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert {image["parameters"]["prompt"] for image in ndjson(result.stdout)[0]} <= {"a fox", "a owl"}


def test_a_missing_wildcard_is_refused_before_loading(cli, tmp_path: Path) -> None:
    result = cli("generate", "a __animal__", "-m", "no/such-model")
    assert result.exit_code == 2 and "no wildcard folder was given" in result.stderr
    result = cli("generate", "a __animal__", "-m", "no/such-model", "--wildcards", tmp_path)
    assert result.exit_code == 2 and "wildcard __animal__: no file" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the error and its hint


def test_prompts_without_variants_stay_as_they_are() -> None:
    lines = [PromptLine(0, GenerationRequest("a {literal} brace, (cat:1.2)", count=3).validated())]
    assert dynamic_prompts.expand(lines, None) == lines
    expanded = dynamic_prompts.expand(
        [PromptLine(2, GenerationRequest("a {red|green|blue} cat", seed=10, count=3).validated())], None
    )
    assert [line.request.seed for line in expanded] == [10, 11, 12]
    assert [line.request.first_index for line in expanded] == [0, 1, 2]
    assert all(line.line == 2 and line.request.count == 1 for line in expanded)
    assert expanded == dynamic_prompts.expand(
        [PromptLine(2, GenerationRequest("a {red|green|blue} cat", seed=10, count=3).validated())], None
    )
