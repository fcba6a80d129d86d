"""Long runs: a signal mid-batch keeps the finished images, and memory stays flat."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sdcli.core.requests import GenerationRequest, ModelRequest
from sdcli.generation import engine
from sdcli.model import pipelines

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
