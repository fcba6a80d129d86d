"""Images whose metadata is hostile or malformed: `sdcli info` and `--from` must answer fast, in one line."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdcli.metadata import _PARAM_RE, _param_pairs, parse_a1111


def _png(tmp_path: Path, chunks: dict[str, str], name: str = "x.png") -> Path:
    info = PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    path = tmp_path / name
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def _jpeg_with_comment(tmp_path: Path, comment: bytes, name: str = "x.jpg") -> Path:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    path = tmp_path / name
    Image.new("RGB", (8, 8)).save(path, "JPEG", exif=exif.tobytes())
    return path


# -- 1. linear parsing ---------------------------------------------------------------------------------------


def test_param_scanner_finds_what_a1111s_regex_finds() -> None:
    rng = random.Random(16)
    alphabet = ["a", "b", "1", " ", ":", ",", '"', "\\", "\t", "-", "/", "é", "\r", "\x1c"]
    for _ in range(20_000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert _param_pairs(line) == _PARAM_RE.findall(line), repr(line)
    line = 'Steps: 20, Sampler: Euler a, Lora hashes: "a: 1, b: \\"2\\"", -x/y z: 3,Seed:4'
    assert _param_pairs(line) == _PARAM_RE.findall(line)


@pytest.mark.parametrize(
    "line",
    [
        "a" * 10_000_000,  # one long word: no colon anywhere
        "a b-c/" * 1_000_000,  # key characters only
        " \t" * 2_000_000,
        ",:" * 2_000_000,
        'k: "\\", ' * 500_000,  # quoted values that never close
        'x: "' + '\\"' * 2_000_000,
    ],
    ids=["word", "key-chars", "spaces", "colons", "open-quotes", "escaped-quotes"],
)
def test_parsing_is_linear(line: str) -> None:
    # A1111's regex took 12 s on 40 KB of "a"; these take well under a second each on a quiet machine.
    start = time.perf_counter()
    parse_a1111(line)
    parse_a1111("prompt\n" * 100_000 + line)
    assert time.perf_counter() - start < 8


def test_many_parameters_and_long_numbers_are_bounded() -> None:
    p = parse_a1111("x\nSteps: 1, Seed: " + "9" * 5000 + ", " + ", ".join(f"k{i}: {i}" for i in range(5000)))
    assert p.params["Steps"] == 1 and p.params["Seed"] == "9" * 5000  # past int()'s digit limit: text
    assert len(p.params) <= 1000


def test_cli_info_on_a_long_line_without_a_colon(cli, tmp_path: Path) -> None:
    png = _png(tmp_path, {"parameters": "a" * 200_000})
    text = ("b" * 60_000).encode("utf-16-be")
    jpeg = _jpeg_with_comment(tmp_path, b"UNICODE\0" + text[: 65_000 - 8])
    start = time.perf_counter()
    result = cli("info", "--json", png, jpeg)
    assert time.perf_counter() - start < 20
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
