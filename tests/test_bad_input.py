"""Bad numbers and bad text fail at once with exit 2 and one line, before any model loads (issue #22)."""

from __future__ import annotations

import json
import math
import time

import pytest

from sdcli.cli import classify
from sdcli.console import Output
from sdcli.errors import ExitCode


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--steps", "1000000000"), "--steps must be at most 1000"),
        (("-W", "100000"), "--width must be at most 8192"),
        (("-H", "100000"), "--height must be at most 8192"),
        (("-b", "100000"), "--batch-size must be at most 10000"),
        (("--cfg", "nan"), "--guidance must be a finite number, got nan"),
        (("--cfg", "inf"), "--guidance must be a finite number, got inf"),
        (("--cfg", "-inf"), "--guidance must be a finite number, got -inf"),
    ],
)
def test_out_of_range_and_non_finite_numbers_exit_2(cli, args: tuple[str, ...], needle: str) -> None:
    result = cli("generate", "a cat", "-m", "some/model", "--offline", *args)
    assert result.exit_code == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # error, and maybe a hint


def test_huge_count_fails_at_once_instead_of_planning_every_name(cli) -> None:
    began = time.perf_counter()
    result = cli("generate", "a cat", "-m", "some/model", "-c", "10000000")
    assert result.exit_code == 2 and "--count must be at most 10000" in result.stderr
    assert time.perf_counter() - began < 2


def test_non_finite_strength_exits_2(cli, tmp_path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "in.png")
    result = cli("img2img", "a cat", "in.png", "-m", "some/model", "--strength", "nan")
    assert result.exit_code == 2 and "--strength must be a finite number, got nan" in result.stderr


def test_non_finite_guidance_in_a_prompts_file_exits_2(cli, tmp_path) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": "a cat", "guidance": NaN}\n')
    result = cli("generate", "--prompts-file", "p.jsonl", "-m", "some/model")
    assert result.exit_code == 2 and "finite" in result.stderr, result.stderr


def test_json_output_is_strict(capsys) -> None:
    with pytest.raises(ValueError):
        Output().data({"guidance": math.nan})
    Output().data({"guidance": 7.5})
    assert json.loads(capsys.readouterr().out) == {"guidance": 7.5}


def test_cpu_allocation_failure_is_out_of_memory() -> None:
    import torch

    from sdcli import engine

    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**60, dtype=torch.uint8)  # what -W/-H 100000 ran into on the CPU
    assert engine.is_out_of_memory(caught.value)
    code, message, hint = classify(caught.value)
    assert code == ExitCode.OUT_OF_MEMORY and message == "out of memory" and hint and "--low-vram" in hint
    assert classify(MemoryError())[0] == ExitCode.OUT_OF_MEMORY


@pytest.mark.parametrize("option", ["prompt", "-n"])
def test_prompt_that_is_not_utf8_exits_2(cli, option: str) -> None:
    bad = "a \udcff cat"  # how Python hands over argv bytes that are not UTF-8
    args = (bad,) if option == "prompt" else ("a cat", "-n", bad)
    result = cli("generate", *args, "-m", "some/model")
    assert result.exit_code == 2, result.stderr
    assert "is not valid UTF-8 text (b'\\xff' at character 2)" in result.stderr


def test_prompt_with_a_lone_surrogate_exits_2(cli) -> None:
    result = cli("generate", "a \ud800 cat", "-m", "some/model")
    assert result.exit_code == 2 and "is not valid UTF-8 text ('\\ud800' at character 2)" in result.stderr
