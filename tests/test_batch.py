"""Batch work and scripting: prompt files, NDJSON, safe names, concurrent writers, interrupts, config
defaults, memory over long runs, and a run shared between processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli import engine, outputs, pipelines, prompt_files
from sdcli.errors import UsageError
from sdcli.requests import GenerationRequest, ModelRequest


def ndjson(text: str) -> tuple[list[dict], dict]:
    *images, summary = [json.loads(line) for line in text.splitlines()]
    assert summary["type"] == "summary" and all(i["type"] == "image" for i in images)
    return images, summary


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


# --- names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    ["../../etc/x", "/abs/path", "CON", "nul.txt", "a\x00b", "two\nlines\r\n", "🐱" * 300, "..", "", " "],
)
def test_hostile_prompts_become_safe_names_inside_the_folder(tmp_path: Path, prompt: str) -> None:
    plan = outputs.plan(str(tmp_path / "out") + "/", count=1)
    path = outputs.render(
        plan, started=datetime(2026, 1, 2, 3, 4, 5), seed=1, index=0, prompt=prompt, model="m"
    )
    assert path.parent == tmp_path / "out"
    name = path.name
    assert len(name.encode()) <= 255 and "/" not in name and "\\" not in name and "\x00" not in name
    assert not any(ord(c) < 32 for c in name)
    assert name.split("-")[3].split(".")[0].upper() not in {"CON", "NUL"}
    template = outputs.plan(str(tmp_path / "t" / "{prompt}/{seed}.png"), count=1)
    nested = outputs.render(template, started=datetime.now(), seed=1, index=0, prompt=prompt, model="m")
    assert nested.resolve().is_relative_to(tmp_path / "t") and nested.parent.parent == tmp_path / "t"


def test_long_names_are_cut_in_utf8_bytes_and_stay_unique(tmp_path: Path) -> None:
    plan = outputs.plan(str(tmp_path / ("{prompt}" * 8 + "-{seed}.png")), count=2)
    paths = [
        outputs.render(plan, started=datetime.now(), seed=s, index=i, prompt="猫" * 200, model="m")
        for i, s in enumerate((1, 2))
    ]
    assert all(len(p.name.encode()) <= 255 for p in paths)
    assert paths[0] != paths[1]
    paths[0].name.encode().decode("utf-8")  # cut on a character boundary


def test_hostile_prompt_through_the_cli(cli, tiny_sd: Path) -> None:
    result = cli("generate", "../../etc/passwd\nCON", "-m", tiny_sd, "--steps", "1", "-o", "safe/")
    assert result.exit_code == 0, result.stderr
    (written,) = Path("safe").iterdir()
    assert Path(result.stdout.strip()).resolve() == written.resolve()


WRITER = """
import sys
from pathlib import Path
from PIL import Image
from sdcli import outputs
from sdcli.errors import OutputError
try:
    image = Image.new("RGB", (256, 256), sys.argv[2])
    path = outputs.write_png(image, Path(sys.argv[1]), unique=sys.argv[3] == "1")
    print(path)
except OutputError as exc:
    print("EXISTS", exc.message)
"""


@pytest.mark.parametrize("unique", [True, False])
def test_two_processes_writing_the_same_name(tmp_path: Path, unique: bool) -> None:
    target = tmp_path / "same.png"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), colour, "1" if unique else "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for colour in ("red", "blue")
    ]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    files = sorted(tmp_path.iterdir())
    if unique:
        assert [f.name for f in files] == ["same.png", "same_1.png"]
    else:
        assert [f.name for f in files] == ["same.png"] and sum(r.startswith("EXISTS") for r in results) == 1
    for f in files:
        with Image.open(f) as im:
            im.verify()


# --- interrupts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_batch_keeps_finished_images_and_exits(tmp_path: Path, tiny_sd: Path, sig, code) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sdcli",
            "generate",
            "a cat",
            "-m",
            str(tiny_sd),
            "--steps",
            "4",
            "-c",
            "200",
            "--seed",
            "1",
            "--json",
            "-o",
            f"{out}/",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first["type"] == "image"
    proc.send_signal(sig)
    rest, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    lines = [first, *(json.loads(line) for line in rest.splitlines())]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["interrupted"] is True
    assert summary["images"] == len(lines) - 1 < 200
    written = sorted(out.iterdir())
    assert [p.name for p in written] == sorted(
        Path(line["path"]).name for line in lines[:-1]
    )  # no .tmp files
    for path in written:
        with Image.open(path) as im:
            im.verify()
    assert "Traceback" not in stderr


# --- config defaults -------------------------------------------------------------------------------------


def test_config_file_then_environment_then_flags(cli, tiny_sd: Path, tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'model = "{tiny_sd}"\nsteps = 2\n[generate]\nguidance = 4.5\nbatch-size = 1\n')
    monkeypatch.setenv("SDCLI_CONFIG", str(config))

    def record(*args: str) -> dict:
        result = cli("generate", "a cat", "--seed", "1", "--json", "-o", "c/", *args)
        assert result.exit_code == 0, result.stderr
        return ndjson(result.stdout)[0][0]["parameters"]

    first = record()
    assert (first["steps"], first["guidance"], first["model"]) == (2, 4.5, "tiny-sd")
    monkeypatch.setenv("SDCLI_STEPS", "3")
    assert record()["steps"] == 3
    assert record("--steps", "1")["steps"] == 1


def test_bad_config_is_a_usage_error(cli, tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text("stepz = 2\n")
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    result = cli("generate", "a cat")
    assert result.exit_code == 2 and "unknown key(s) stepz" in result.stderr
    config.write_text("steps = [")
    result = cli("generate", "a cat")
    assert result.exit_code == 2 and str(config) in result.stderr
    monkeypatch.setenv("SDCLI_CONFIG", str(tmp_path / "missing.toml"))
    assert cli("generate", "a cat").exit_code == 2


# --- long runs -------------------------------------------------------------------------------------------


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_stays_flat_over_a_long_batch(tiny_sd: Path) -> None:
    model = pipelines.load_model(ModelRequest(str(tiny_sd)))
    request = GenerationRequest(
        "a cat", steps=1, seed=0, count=50
    ).validated()  # 1 step each: ~0.1 s an image
    samples = {}
    for image in engine.generate(model, request):
        image.image.tobytes()
        if image.index in (4, 49):
            samples[image.index] = rss_bytes()
    assert samples[49] <= samples[4] * 1.03, samples


# --- many processes --------------------------------------------------------------------------------------


def test_two_processes_share_a_prompt_file(cli, tiny_sd: Path, tmp_path: Path) -> None:
    lines = "".join(f"prompt number {i}\n" for i in range(6))
    (tmp_path / "p.txt").write_text(lines)
    args = [
        "generate",
        "--prompts-file",
        str(tmp_path / "p.txt"),
        "-m",
        str(tiny_sd),
        "--steps",
        "1",
        "--seed",
        "50",
        "--json",
    ]
    single = cli(*args, "-o", str(tmp_path / "one") + "/")
    assert single.exit_code == 0, single.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "sdcli",
            *args,
            "-o",
            str(tmp_path / "two") + "/",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    summaries = [r for r in records if r["type"] == "summary"]
    assert len(summaries) == 1 and summaries[0]["images"] == 6
    images = [r for r in records if r["type"] == "image"]
    assert sorted(r["seed"] for r in images) == list(range(50, 56))
    assert sorted(r["process"] for r in images) == [0, 0, 0, 1, 1, 1]
    assert len({r["path"] for r in images}) == 6 and len(list((tmp_path / "two").iterdir())) == 6
    by_seed = {r["seed"]: r["path"] for r in ndjson(single.stdout)[0]}
    for r in images:
        with Image.open(r["path"]) as a, Image.open(by_seed[r["seed"]]) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b))


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
