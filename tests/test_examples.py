"""examples/*.sh run for real against the tiny random-weight model on the CPU, so none of them rots.

Each script runs as a user would run it, with `sdcli` on PATH: a wrapper that runs `python -m sdcli` with this
interpreter and this checkout, and logs its arguments so a test can tell whether (and how) sdcli was called.
Every sdcli process costs seconds of imports, so each script gets one run (two for multi-gpu.sh) with one
denoising step at 32x32.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sdcli.images import metadata

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.sh"))
TESTED = {"batch.sh", "ci-smoke.sh", "img2img-folder.sh", "multi-gpu.sh", "reproduce.sh"}
TINY = ("--steps", "1", "-W", "32", "-H", "32", "--device", "cpu")
NEEDS_JQ = pytest.mark.skipif(shutil.which("jq") is None, reason="the script needs jq")


class Shell:
    """Runs example scripts with a logging `sdcli` wrapper first on PATH."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "sdcli-calls.log"
        self.log.touch()
        self.install(f'exec "{sys.executable}" -m sdcli "$@"')
        env = {k: v for k, v in os.environ.items() if not k.startswith("SDCLI_")}
        python_path = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        # The interpreter's own folder too: `accelerate` lives beside it.
        path = os.pathsep.join([str(self.bin), str(Path(sys.executable).parent), env["PATH"]])
        self.env = {
            **env,
            "PATH": path,
            "PYTHONPATH": python_path,
            "HF_HUB_OFFLINE": "1",
            "SDCLI_WORKER": "off",
        }

    def install(self, body: str) -> None:
        wrapper = self.bin / "sdcli"
        wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >>"{self.log}"\n{body}\n')
        wrapper.chmod(0o755)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def run(self, script: str, *args: object, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["bash", str(EXAMPLES / script), *map(str, args)],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        print(proc.stderr[-4000:], file=sys.stderr)  # shown when a test fails
        return proc


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    return Shell(tmp_path)


def ndjson(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record(path: Path) -> dict:
    found = metadata.read_metadata(path).record
    assert found is not None, f"{path} carries no sdcli record"
    return found


def test_every_script_is_tested_strict_and_clean() -> None:
    assert set(SCRIPTS) == TESTED, "a new example needs a test here (and an entry in TESTED)"
    for name in SCRIPTS:
        path = EXAMPLES / name
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), name
        assert "\nset -euo pipefail\n" in text, name
        assert path.stat().st_mode & stat.S_IXUSR, f"{name} is not executable"
        syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert syntax.returncode == 0, syntax.stderr
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", *(str(EXAMPLES / n) for n in SCRIPTS)], capture_output=True)
        assert lint.returncode == 0, lint.stdout.decode()


@pytest.mark.slow
@NEEDS_JQ
def test_batch_makes_what_is_missing_and_resumes_safely(shell: Shell, tiny_sd: Path) -> None:
    out = shell.root / "shots"
    out.mkdir()
    prompts = shell.root / "prompts.txt"
    prompts.write_text('a red boat\n# a comment\n{"prompt": "a green hill", "guidance": 5}\na blue door\n')
    # A run was cut short: line 1 finished and is in the manifest; line 3's image was written but the
    # run was killed before its JSON line reached the manifest (sdcli would exit 6 on that name).
    done = out / "1-10.png"
    done.write_bytes(b"finished earlier")
    stray = out / "3-11.png"
    stray.write_bytes(b"not in the manifest")
    entry = {"type": "image", "line": 1, "prompt": "a red boat", "seed": 10, "path": str(done)}
    (out / "manifest.jsonl").write_text(json.dumps(entry) + "\n")

    proc = shell.run("batch.sh", prompts, "shots", "-m", tiny_sd, *TINY, SEED="10")
    assert proc.returncode == 0, proc.stderr
    assert done.read_bytes() == b"finished earlier"  # skipped, not made again
    assert sorted(p.name for p in out.glob("*.png")) == ["1-10.png", "3-11.png", "4-12.png"]
    # Seeds are what one sdcli run over the whole file would give: SEED + k for the k-th prompt.
    remade, new = record(stray), record(out / "4-12.png")
    assert (remade["prompt"], remade["seed"], remade["guidance"]) == ("a green hill", 11, 5)
    assert (new["prompt"], new["seed"]) == ("a blue door", 12)
    *images, summary = ndjson(out / "manifest.jsonl")[1:]
    assert [(i["line"], i["seed"], Path(i["path"]).name) for i in images] == [
        (3, 11, "3-11.png"),
        (4, 12, "4-12.png"),
    ]
    assert summary["type"] == "summary" and summary["images"] == 2

    # Everything listed and present: nothing to do, and sdcli is not even started.
    again = shell.run("batch.sh", prompts, "shots", "-m", tiny_sd, *TINY, SEED="10")
    assert again.returncode == 0 and "done" in again.stderr
    assert len(shell.calls()) == 1


@pytest.mark.slow
def test_img2img_folder_repaints_every_image(shell: Shell, tiny_sd: Path) -> None:
    photos = shell.root / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 32), (200, 30, 30)).save(photos / "a.png")
    Image.new("RGB", (32, 48), (30, 30, 200)).save(photos / "b.jpg")
    (photos / "notes.txt").write_text("not an image: the folder scan skips it")

    proc = shell.run(
        "img2img-folder.sh", "a watercolor", photos, "painted", "0.5", "-m", tiny_sd, "--steps", "2"
    )
    assert proc.returncode == 0, proc.stderr
    made = sorted((shell.root / "painted").glob("*.png"))
    assert [str(p.relative_to(shell.root)) for p in made] == sorted(proc.stdout.split())
    records = sorted((record(p) for p in made), key=lambda r: r["init_image"]["name"])
    assert [(r["init_image"]["name"], r["width"], r["height"]) for r in records] == [
        ("a.png", 40, 32),
        ("b.jpg", 32, 48),
    ]
    assert {r["strength"] for r in records} == {0.5}


@pytest.mark.slow
def test_reproduce_remakes_from_the_png_with_one_option_changed(shell: Shell, cli, tiny_sd: Path) -> None:
    original = cli("generate", "a cat in a hat", "-m", tiny_sd, "--seed", "42", *TINY, "-o", "orig.png")
    assert original.exit_code == 0, original.stderr
    first = record(shell.root / "orig.png")

    proc = shell.run("reproduce.sh", "orig.png", "-m", tiny_sd, "--cfg", "3", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    (path,) = proc.stdout.split()
    assert Path(path).parent.name == "remakes"
    again = record(shell.root / path)
    kept = ("prompt", "seed", "steps", "width", "height", "sampler")
    assert {k: again[k] for k in kept} == {k: first[k] for k in kept}
    assert (first["guidance"], again["guidance"]) == (7.0, 3.0)


@pytest.mark.slow
def test_multi_gpu_splits_the_prompts_across_processes(shell: Shell, tiny_sd: Path) -> None:
    """Two CPU processes under `accelerate launch`: each takes every other line."""
    import socket

    with socket.socket() as probe:  # a free port: another launch on this machine may hold 29500
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    prompts = shell.root / "prompts.txt"
    prompts.write_text("a red boat\na green hill\n")
    proc = shell.run(
        "multi-gpu.sh",
        prompts,
        "shots",
        "-m",
        tiny_sd,
        *TINY,
        "--seed",
        "5",
        "-q",
        PROCESSES="2",
        CPU="1",
        MAIN_PROCESS_PORT=str(port),
    )
    assert proc.returncode == 0, proc.stderr
    lines = ndjson(shell.root / "shots" / "manifest.jsonl")
    images = sorted((i for i in lines if i["type"] == "image"), key=lambda i: i["line"])
    assert [(i["line"], i["seed"], i["prompt"]) for i in images] == [
        (1, 5, "a red boat"),
        (2, 6, "a green hill"),
    ]
    # Two images, not four, one from each process. The summary is counted once, over both.
    assert sorted(i["process"] for i in images) == [0, 1]
    assert [s["images"] for s in lines if s["type"] == "summary"] == [2]
    assert all(Path(i["path"]).is_file() for i in images)
    assert len(shell.calls()) == 0  # accelerate starts `python -m sdcli` itself


@pytest.mark.slow
def test_ci_smoke_checks_the_stack_and_makes_an_image(shell: Shell, tiny_sd: Path) -> None:
    proc = shell.run(
        "ci-smoke.sh", "smoke", tiny_sd, "--steps", "1", "-W", "32", "-H", "32",
        SDCLI_DEVICE="cpu", SDCLI_DTYPE="fp32",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = json.loads((shell.root / "smoke" / "info.json").read_text())
    assert info["check"]["ok"] and (info["check"]["device"], info["check"]["dtype"]) == ("cpu", "fp32")
    (image,) = ndjson(shell.root / "smoke" / "generate.jsonl")[:-1]
    assert Path(image["path"]) == Path("smoke/smoke.png")
    assert record(shell.root / "smoke" / "smoke.png")["dtype"] == "fp32"
    assert [c.split()[:2] for c in shell.calls()] == [["info", "--check"], ["generate", "a"]]


def test_ci_smoke_fails_the_job_when_the_check_fails(shell: Shell) -> None:
    """A broken stack (here a stand-in sdcli whose check fails) fails the job with sdcli's code and makes
    no image."""
    shell.install('echo \'{"check": {"ok": false, "failed_stage": "verify"}}\'; exit 7')
    proc = shell.run("ci-smoke.sh", "smoke", "some/model")
    assert proc.returncode == 7
    assert "failed (exit 7)" in proc.stderr
    assert [c.split()[0] for c in shell.calls()] == ["info"]
