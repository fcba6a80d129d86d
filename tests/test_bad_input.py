"""Bad numbers and bad text fail at once with exit 2 and one line, before any model loads (issue #22)."""

from __future__ import annotations

import json
import math
import time

import pytest

from sdcli.cli import classify
from sdcli.commands.console import Output
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

    from sdcli.generation import engine

    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**60, dtype=torch.uint8)  # what -W/-H 100000 ran into on the CPU
    assert engine.is_out_of_memory(caught.value)
    code, message, hint = classify(caught.value)
    assert code == ExitCode.OUT_OF_MEMORY and message == "out of memory"
    # The machine's memory ran out, not a GPU's: offloading to it would not help.
    assert hint and "--width/--height" in hint and "--low-vram" not in hint
    assert classify(MemoryError())[0] == ExitCode.OUT_OF_MEMORY
    gpu = classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert gpu[0] == ExitCode.OUT_OF_MEMORY and gpu[2] and "--low-vram" in gpu[2]


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


@pytest.mark.parametrize("template", ["{seed:s}.png", "{index!x}.png", "out/{date:%}/{seed}.png"])
def test_output_template_that_cannot_be_filled_exits_2(cli, template: str) -> None:
    result = cli("generate", "a cat", "-m", "some/model", "-o", template)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: --output template '") and "Unknown" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2


def test_output_template_with_a_format_spec_that_fits_still_works() -> None:
    from sdcli.images import outputs

    plan = outputs.plan("{index:04d}-{seed}.png", count=2)
    assert plan.template == "{index:04d}-{seed}.png"


def test_same_input_names_from_two_folders_hint_at_the_folders(cli, tmp_path) -> None:
    from PIL import Image

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (64, 64)).save(tmp_path / folder / "photo.png")
    result = cli("img2img", "a cat", "a/photo.png", "b/photo.png", "-m", "some/model", "-o", "{input}.png")
    assert result.exit_code == 2, result.stderr
    assert "gives the same name to several images" in result.stderr
    assert "{seed}" not in result.stderr and "in different folders share a file name" in result.stderr


def test_model_index_that_is_a_json_list_exits_3(cli, tmp_path) -> None:
    (tmp_path / "listy").mkdir()
    (tmp_path / "listy" / "model_index.json").write_text("[1, 2]")
    result = cli("generate", "a cat", "-m", "listy")
    assert result.exit_code == 3, result.stderr
    assert "model_index.json is a JSON list, not an object" in result.stderr


@pytest.mark.parametrize("header", [b"[1, 2]", b'{"a": 5}', b'{"a": {"shape": "x"}}', b'"text"'])
def test_safetensors_header_of_the_wrong_shape_exits_2(cli, tmp_path, header: bytes) -> None:
    import struct

    from sdcli.errors import UsageError
    from sdcli.model import checkpoints

    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(UsageError, match="odd.safetensors is not a readable .safetensors file"):
        checkpoints.safetensors_shapes(path)
    result = cli("generate", "a cat", "-m", "odd.safetensors")
    assert result.exit_code == 2, result.stderr
    assert "odd.safetensors is not a readable .safetensors file" in result.stderr


@pytest.mark.parametrize(("option", "name"), [("--scheduler", "Eulr b"), ("--schedule", "karas")])
def test_unknown_scheduler_is_refused_before_loading(cli, option: str, name: str) -> None:
    # some/model does not exist: before, the model was looked for (exit 3) before the name was checked.
    result = cli("generate", "a cat", "-m", "some/model", option, name)
    assert result.exit_code == 2, result.stderr
    assert "unknown" in result.stderr and name in result.stderr


@pytest.mark.parametrize(
    "stored",
    [
        {"class": "EulerDiscreteScheduler", "config": {"num_train_timesteps": "many"}},
        {"class": "EulerDiscreteScheduler", "config": {"beta_schedule": "wobbly"}},
        {"class": "os.system", "config": {}},
    ],
)
def test_from_an_image_with_a_bogus_scheduler_exits_2_before_loading(
    cli, tiny_sd, tmp_path, monkeypatch, stored: dict
) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from sdcli.model import pipelines

    def never(*args, **kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(pipelines, "load_pipeline", never)
    record = {"schema": 1, "prompt": "a cat", "steps": 2, "seed": 1, "guidance": 7.0, "scheduler": stored}
    info = PngInfo()
    info.add_text("sdcli", json.dumps(record))
    Image.new("RGB", (64, 64)).save(tmp_path / "made.png", pnginfo=info)
    result = cli("generate", "--from", "made.png", "-m", tiny_sd)
    assert result.exit_code == 2, result.stderr
    assert "the image's" in result.stderr and "scheduler" in result.stderr


def test_refused_pickle_warns_nothing(tmp_path) -> None:
    import collections
    import pickle
    import warnings

    from sdcli.errors import UsageError
    from sdcli.model import checkpoints

    path = tmp_path / "objects.ckpt"
    path.write_bytes(pickle.dumps({"a": collections.OrderedDict()}, protocol=4))
    with warnings.catch_warnings(record=True) as seen, pytest.raises(UsageError, match="other than tensors"):
        warnings.simplefilter("always")
        checkpoints.load_pickle(path)
    assert not seen, [str(w.message) for w in seen]


def test_scheduler_config_with_infinity_is_strict_json_and_comes_back() -> None:
    import diffusers

    from sdcli.model import schedulers

    config = dict(diffusers.DPMSolverMultistepScheduler().config)  # lambda_min_clipped defaults to -inf
    stored = {k: schedulers.storable(v) for k, v in config.items() if not k.startswith("_")}
    assert stored["lambda_min_clipped"] == "-Infinity"
    text = json.dumps(stored, allow_nan=False)
    back = schedulers.from_state("DPMSolverMultistepScheduler", json.loads(text))
    assert back.config.lambda_min_clipped == -math.inf
