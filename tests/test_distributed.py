"""A run shared between processes (accelerate launch): every image once, the summary once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.png_helpers import ndjson


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
