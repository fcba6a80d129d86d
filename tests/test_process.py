"""Things only a real process shows: what `--help` and usage errors import, and `python -m sdcli`."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers")

PROBE = """
import sys
sys.argv = ["sdcli", *sys.argv[1:]]
from sdcli.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print("EXIT", code, "HEAVY", ",".join(m for m in {heavy!r} if m in sys.modules) or "none", file=sys.stderr)
"""


def run_probe(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True, timeout=60
    )
    last = proc.stderr.strip().splitlines()[-1].split()
    return int(last[1]), last[3], proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("generate", "--help"),
        ("download", "--help"),
        ("generate", "a cat", "--width", "33"),
        ("generate", "a cat", "--steps", "zero"),
        ("generate", "a cat", "--device", "tpu"),
        ("generate", "a cat", "--no-such-option"),
        ("info", "--help"),
        ("info", "--check", "--device", "tpu"),
        ("img2img", "--help"),
        ("inpaint", "--help"),
        ("serve", "--help"),
        ("upscale", "--help"),
        ("upscale", "photo.png", "--scale", "0"),
        ("upscale", "no/such/photo.png"),
        ("upscale", "no/such/photo.png", "--upscaler", "bicubic"),
        ("serve", "--keep-alive", "soon"),
        ("img2img", "a cat", "photo.png", "--strength", "1.5"),
        ("img2img", "a cat", "no/such/photo.png"),
        ("inpaint", "photo.png", "mask.png", "a cat", "--mask-blur", "-1"),
    ],
)
def test_help_and_usage_errors_never_import_torch(args: tuple[str, ...]) -> None:
    code, heavy, stderr = run_probe(*args)
    assert heavy == "none", f"{args} imported {heavy}"
    assert code == (0 if "--help" in args else 2), stderr
    assert "Traceback" not in stderr


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sdcli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("sdcli ")
