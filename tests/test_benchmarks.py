"""The benchmark scripts still run, in their quick modes. Nothing here measures anything: timings on a shared
CI machine are noise, so the benchmarks themselves are run by hand (benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_script(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_startup_benchmark_runs() -> None:
    out = run_script("bench_startup.py", "--quick")
    assert "| sdcli --help (wall)" in out
    assert "| sdcli generate --help (wall)" in out


def test_generate_benchmark_runs_both_sides_on_the_same_work(tiny_sd: Path) -> None:
    # --quick: one probed run of each side (two at a time) on the tests' tiny model.
    out = run_script("bench_generate.py", "--quick", "--model", str(tiny_sd))
    assert "| time to first image (wall)" in out
    assert "| start-up + imports" in out
    assert "| per image, steady state" in out
    assert "Batch amortisation" in out
    # The two sides made the same pixels: the comparison is of the same work.
    assert "Pixels, sdcli vs plain (AutoPipeline): identical" in out
    assert "Pixels of the first image, sdcli vs plain loop: identical" in out


def test_gpu_benchmark_smoke_mode_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCHMARKS / "bench_gpu.py")
    assert spec is not None and spec.loader is not None
    bench_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_gpu)
    args = ["--device", "cpu", "--tiny", "--models", str(tmp_path), "--configs", "plain,sdcli,sdcli-low-vram"]
    assert bench_gpu.main(args) == 0
    out = capsys.readouterr().out
    for family in ("sd15", "sdxl"):
        assert f"## {family}: 2 steps" in out
    assert "sdcli default:" in out


def test_flux_benchmark_runs_on_the_same_work(tiny_flux: Path) -> None:
    out = run_script("bench_flux.py", "--quick", "--model", str(tiny_flux))
    assert "| time to first image (wall)" in out and "| per image, steady state" in out
    assert "Pixels, sdcli vs plain (AutoPipeline): identical" in out


def test_worker_benchmark_runs_warm_and_cold_loops(tiny_sd: Path) -> None:
    out = run_script("bench_worker.py", "--quick", "--model", str(tiny_sd))
    assert "| 2 generate calls in a shell loop (wall)" in out
    assert "| heavy modules the warm client imported" in out and "| none " in out
