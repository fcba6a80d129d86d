"""Images whose metadata is hostile or malformed: `sdcli info` and `--from` must answer fast, in one line."""

from __future__ import annotations

import json
import random
import struct
import time
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdcli.images.metadata import _PARAM_RE, _param_pairs, parse_a1111, read_metadata, record_for_remake


def _png(tmp_path: Path, chunks: dict[str, str], name: str = "x.png") -> Path:
    info = PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    path = tmp_path / name
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def _flat(text: str) -> str:
    """Rich wraps table titles to the table's width."""
    return " ".join(text.split())


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


# -- 2. JSON of the wrong shape ------------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "sdcli_text",
    [
        '{"schema": 1, "versions": 3}',
        '{"prompt": 5}',
        '{"schema": 1, "steps": "many"}',
        '{"schema": 1, "loras": [1, 2]}',
        '{"schema": 1, "guidance": NaN}',
        '{"schema": 1, "seed": ' + "9" * 30 + "}",
        "[1, 2]",
        DEEP,
        "{" * 50_000,
        '{"schema": 1, "x": ' + "[" * 500 + "]" * 500 + "}",  # Python reads it, copying it recursed too deep
    ],
    ids=["versions", "prompt", "steps", "loras", "nan", "huge-int", "list", "deep", "unclosed", "deep-500"],
)
def test_invalid_sdcli_record_is_a_warning(tmp_path: Path, sdcli_text: str) -> None:
    parameters = "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64"
    meta = read_metadata(_png(tmp_path, {"sdcli": sdcli_text, "parameters": parameters}))
    assert meta.record is None and meta.source == "a1111" and meta.prompt == "a cat"
    assert len(meta.warnings) == 1 and "not valid sdcli metadata" in meta.warnings[0]


@pytest.mark.parametrize("key", ["prompt", "invokeai_metadata"])
def test_deep_json_in_other_chunks_is_a_warning(tmp_path: Path, key: str) -> None:
    meta = read_metadata(_png(tmp_path, {key: DEEP}))
    assert meta.prompt is None and meta.parameters in ({}, {"RNG": "CPU"})
    assert len(meta.warnings) == 1 and "is not valid" in meta.warnings[0]


def test_cli_reports_a_hostile_image_in_one_warning_line(cli, tmp_path: Path) -> None:
    path = _png(tmp_path, {"sdcli": '{"schema": 1, "versions": 3}', "prompt": DEEP, "Software": "x"})
    result = cli("info", path)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: x.png: its 'sdcli' text is not valid sdcli")
    assert "; its 'prompt' text is not valid ComfyUI metadata; ignored" in lines[0]
    assert "x.png (PNG, no generation parameters)" in _flat(result.stdout)
    data = cli("info", "--json", "-q", path)
    assert data.exit_code == 0 and data.stderr == ""
    assert len(json.loads(data.stdout)["warnings"]) == 2


@pytest.mark.parametrize("sdcli_text", ['{"schema": 1, "versions": 3}', '{"prompt": 5}', DEEP])
def test_generate_from_a_hostile_record_is_exit_2(cli, tmp_path: Path, sdcli_text: str) -> None:
    path = _png(tmp_path, {"sdcli": sdcli_text})
    result = cli("generate", "--from", path)
    assert result.exit_code == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: x.png carries no usable generation parameters: its 'sdcli' text is not")


def test_remake_bounds_a1111_numbers(tmp_path: Path) -> None:
    text = (
        "a cat\nSteps: " + "9" * 400 + ", Sampler: Euler, CFG scale: 1e999, Seed: 5, Denoising strength: inf"
    )
    record = record_for_remake(read_metadata(_png(tmp_path, {"parameters": text})))
    assert "steps" not in record and "guidance" not in record and "strength" not in record
    assert record["seed"] == 5


# -- 3. Pillow's warnings ------------------------------------------------------------------------------------


def _malformed_exif_jpeg(tmp_path: Path) -> Path:
    # IFD0 points at an Exif IFD whose UserComment claims 1000 bytes at an offset past the end.
    ifd0 = struct.pack(">HHHII", 1, 0x8769, 4, 1, 26) + struct.pack(">I", 0)
    exif_ifd = struct.pack(">HHHII", 1, 0x9286, 7, 1000, 9999) + struct.pack(">I", 0)
    path = tmp_path / "bad-exif.jpg"
    exif = b"Exif\0\0MM\0*" + struct.pack(">I", 8) + ifd0 + exif_ifd
    Image.new("RGB", (8, 8)).save(path, "JPEG", exif=exif)
    return path


def test_malformed_exif_prints_nothing(cli, tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    path = _malformed_exif_jpeg(tmp_path)
    meta = read_metadata(path)
    assert meta.source is None and not recwarn.list
    result = cli("info", path)
    assert result.exit_code == 0 and result.stderr == ""


# -- 6. many files -------------------------------------------------------------------------------------------


def test_info_reports_every_file_then_exits_2(cli, tmp_path: Path) -> None:
    good = _png(tmp_path, {"parameters": "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5"}, "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG not really")
    other = _png(tmp_path, {}, "c.png")
    result = cli("info", good, tmp_path / "b.png", tmp_path / "missing.png", other)
    assert result.exit_code == 2
    shown = _flat(result.stdout)
    assert "a.png (PNG, a1111)" in shown and "c.png (PNG, no generation parameters)" in shown
    assert result.stderr.splitlines() == [
        "error: b.png: not a PNG, JPEG or WebP image",
        "error: missing.png: no such file",
    ]
    data = cli("info", "--json", good, tmp_path / "b.png", other)
    assert data.exit_code == 2
    assert [json.loads(line)["file"] for line in data.stdout.splitlines()] == ["a.png", "c.png"]


def test_comfyui_node_ids_that_are_not_plain_numbers(tmp_path: Path) -> None:
    graph = {
        "²": {"class_type": "KSampler", "inputs": {"steps": 3}},
        "9" * 5000: {"class_type": "KSampler", "inputs": {"steps": 4}},
        "2": {"class_type": "KSampler", "inputs": {"steps": 5}},
    }
    meta = read_metadata(_png(tmp_path, {"prompt": json.dumps(graph)}))
    assert meta.source == "comfyui" and meta.parameters["Steps"] == 5 and meta.warnings == []


def test_text_from_an_image_is_shown_as_it_is(cli, tmp_path: Path) -> None:
    text = "a [/] cat [bold]x\x1b[31mred\nNegative prompt: [/red]\nSteps: 1, Seed: 2, Sampler: [/]Euler"
    result = cli("info", _png(tmp_path, {"parameters": text}, "[b]x.png"))
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout
    shown = _flat(result.stdout)
    assert "[b]x.png (PNG, a1111)" in shown and "a [/] cat [bold]x\ufffd[31mred" in shown
    assert "[/red]" in shown and "[/]Euler" in shown


@pytest.mark.parametrize(
    "config", [{"num_train_timesteps": "x"}, {"beta_schedule": 5}, {"timestep_spacing": [1]}]
)
def test_a_scheduler_config_diffusers_cannot_use_is_a_usage_error(config: dict) -> None:
    from sdcli.errors import UsageError
    from sdcli.model import schedulers

    with pytest.raises(UsageError, match="stored EulerDiscreteScheduler config is not usable") as err:
        schedulers.from_state("EulerDiscreteScheduler", config)
    assert "\n" not in err.value.message
    assert schedulers.from_state("EulerDiscreteScheduler", {}).config.num_train_timesteps == 1000


@pytest.mark.parametrize(
    "chunks",
    [
        {"parameters": "a\nSteps: 1, Seed: 2, CFG scale: " + "9" * 400 + ".5, Sampler: Euler"},
        {"prompt": '{"3": {"class_type": "KSampler", "inputs": {"cfg": 1e999, "steps": 2}}}'},
        {"sdcli": '{"schema": 1, "extra": NaN}', "parameters": "a\nSteps: 1, Seed: 2, Sampler: x"},
        {"parameters": json.dumps({"sui_image_params": {"cfgscale": "Infinity", "steps": 2}})},
    ],
    ids=["a1111", "comfyui", "sdcli", "swarmui"],
)
def test_json_output_is_strict_json(cli, tmp_path: Path, chunks: dict[str, str]) -> None:
    result = cli("info", "--json", "-q", _png(tmp_path, chunks))
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in --json output"))


def test_generate_from_says_what_it_ignored(cli, tmp_path: Path) -> None:
    text = "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64"
    path = _png(tmp_path, {"sdcli": '{"schema": 1, "versions": 3}', "parameters": text})
    result = cli("generate", "--from", path, "--steps", "0")  # fails validation before any model is loaded
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("warning: x.png: its 'sdcli' text is not valid sdcli metadata")
    assert lines[1] == "error: --steps must be at least 1, got 0"


@pytest.mark.parametrize("key", ["sdcli", "prompt", "parameters", "sd-metadata"])
def test_json_that_python_reads_but_nests_too_deep(cli, tmp_path: Path, key: str) -> None:
    text = '{"schema": 1, "3": {"class_type": "KSampler", "inputs": {"x": ' + "[" * 900 + "]" * 900 + "}}}"
    for args in (["--json"], []):
        result = cli("info", *args, _png(tmp_path, {key: text}))
        assert result.exit_code == 0, result.stderr


def test_a_huge_prompt_is_shown_cut(cli, tmp_path: Path) -> None:
    text = "word " * 2_000_000 + "\nSteps: 1, Seed: 2, Sampler: Euler"
    path = _png(tmp_path, {"parameters": text})
    start = time.perf_counter()
    result = cli("info", path)
    assert time.perf_counter() - start < 20
    assert result.exit_code == 0 and "--json shows them all" in _flat(result.stdout)
    assert len(json.loads(cli("info", "--json", path).stdout)["prompt"]) == len("word " * 2_000_000) - 1


def test_a_file_cannot_make_from_run_for_ever(cli, tmp_path: Path) -> None:
    record = '{"schema": 1, "prompt": "x", "steps": 1000000000}'
    meta = read_metadata(_png(tmp_path, {"sdcli": record}))
    assert meta.record is None and "'steps' is not between 1 and 10000" in meta.warnings[0]
    text = "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 1000000x64"
    result = cli("generate", "--from", _png(tmp_path, {"parameters": text}, "wide.png"))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: wide.png: its a1111 parameters cannot be re-made ('width' is not between 8 and 16384)"
    ]
