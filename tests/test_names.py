"""Safe, unique output names from hostile prompts, and two processes writing into one folder."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from sdcli.images import outputs


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
from sdcli.images import outputs
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
