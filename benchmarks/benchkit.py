"""What every sdcli benchmark shares: fresh child processes with their own resource usage, A/B interleaving,
medians and ratio tables, a description of the machine, and the random-weight models the runs use.

Standard library only, so importing it costs nothing that a measurement could pick up.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the checkout whose sdcli is measured
HERE = Path(__file__).resolve().parent
PY = sys.executable


@dataclass
class Sample:
    """One finished child process: wall seconds, CPU seconds (user + system), peak RSS, output."""

    wall: float
    cpu: float
    rss_mb: float
    code: int
    stdout: str
    stderr: str
    started: float  # time.time() just before the child was started (to align the child's own timestamps)
    events: dict[str, Any] = field(default_factory=dict)  # what benchmarks/probe.py recorded, if used


def child_env(**extra: str) -> dict[str, str]:
    """The environment of every measured child: this checkout's sdcli first on the path, no network, and
    bytecode caching on, as in an installed package (PYTHONDONTWRITEBYTECODE would make sdcli, and only
    sdcli, recompile its sources on every start)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_COLOR="1",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONWARNINGS="ignore",
    )
    env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 1800,
    check: bool = True,
) -> Sample:
    """Run one child to completion and read its own rusage with wait4 (not RUSAGE_CHILDREN, whose peak RSS
    is the largest of all children so far)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.time()
        begin = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env or child_env(), cwd=cwd
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - begin
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if check and code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{stderr[-3000:]}")
    # Linux reports ru_maxrss in KiB.
    return Sample(
        wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code, stdout, stderr, started
    )


def interleave(
    sides: dict[str, Callable[[], Sample]],
    reps: int,
    *,
    warmup: int = 1,
    log: bool = True,
    parallel: bool = False,
) -> dict[str, list[Sample]]:
    """Run the sides in turn, rep after rep, so that load from other work hits them alike; the order flips
    every rep (A B, B A, ...) so neither side always runs right after the other. `warmup` untimed rounds
    first fill the page cache and write bytecode. `parallel` runs each rep's sides at the same time: quicker,
    for smoke tests, but the sides then compete for the CPU and the numbers mean little."""
    for _ in range(warmup):
        for run_side in sides.values():
            run_side()
    results: dict[str, list[Sample]] = {name: [] for name in sides}
    names = list(sides)
    for rep in range(reps):
        if parallel:
            with ThreadPoolExecutor(len(sides)) as pool:
                futures = {name: pool.submit(sides[name]) for name in names}
                done = [(name, futures[name].result()) for name in names]
        else:
            done = [(name, sides[name]()) for name in (names if rep % 2 == 0 else names[::-1])]
        for name, sample in done:
            results[name].append(sample)
            if log:
                note(f"  rep {rep + 1}/{reps} {name}: {sample.wall:.2f} s wall, {sample.cpu:.2f} s cpu")
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def note(text: str) -> None:
    """Progress goes to stderr; the tables go to stdout."""
    print(text, file=sys.stderr, flush=True)


@dataclass
class Row:
    measure: str
    ours: float
    theirs: float
    unit: str
    target: str  # "<= 1.5" or ">= 5"

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs if self.theirs else float("nan")

    @property
    def verdict(self) -> str:
        if not self.target:
            return ""
        op, bound = self.target.split()
        ok = self.ratio <= float(bound) if op == "<=" else self.ratio >= float(bound)
        return "ok" if ok else "MISSED"


def table(title: str, rows: Sequence[Row], ours: str = "sdcli", theirs: str = "baseline") -> str:
    head = ("measure", ours, theirs, "ratio", "target", "")
    cells = [
        (
            r.measure,
            f"{r.ours:.3f} {r.unit}",
            f"{r.theirs:.3f} {r.unit}",
            f"{r.ratio:.3f}x",
            f"{r.target}x" if r.target else "",
            r.verdict,
        )
        for r in rows
    ]
    return plain_table(title, head, cells)


def plain_table(title: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [tuple(head)] + [tuple(r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = [f"## {title}", ""]
    for n, line in enumerate(lines):
        text.append("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |")
        if n == 0:
            text.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "-"


def machine() -> str:
    versions = ", ".join(f"{p} {_version(p)}" for p in ("torch", "diffusers", "transformers", "typer"))
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {_cpu_model()}, {os.cpu_count()} logical CPUs; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; {versions}; "
        f"load average {load()} at start"
    )


@dataclass(frozen=True)
class ModelSpec:
    """A random-weight SD 1.x pipeline from sdcli.diagnostics.tiny: `width` scales every layer, the image is
    2 * sample_size pixels square (the tiny VAE downsamples by 2)."""

    width: int = 8
    sample_size: int = 128

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """ "w8s128" -> width 8, sample size 128."""
        w, s = text.lower().removeprefix("w").split("s")
        return cls(int(w), int(s))

    @property
    def name(self) -> str:
        return f"w{self.width}s{self.sample_size}"

    @property
    def pixels(self) -> int:
        return self.sample_size * 2


def model_cache() -> Path:
    return Path(os.environ.get("SDCLI_BENCH_MODELS") or Path.home() / ".cache" / "sdcli-bench")


def ensure_model(spec: ModelSpec, root: Path | None = None) -> Path:
    """Build the pipeline once (in a child process, so this one stays light) and reuse the saved folder."""
    root = root or model_cache()
    folder = root / f"sd-{spec.name}"
    if (folder / "model_index.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".sd-{spec.name}-", dir=root))
    code = (
        "import sys\n"
        "from sdcli.diagnostics.tiny import TinySpec, build_tiny_pipeline\n"
        f"pipe = build_tiny_pipeline(TinySpec('sd', {spec.width}, {spec.sample_size}))\n"
        "pipe.save_pretrained(sys.argv[1])\n"
    )
    note(f"building the {spec.name} random-weight pipeline in {folder} ...")
    run([PY, "-c", code, str(tmp / "model")])
    os.replace(tmp / "model", folder)
    tmp.rmdir()
    return folder


def read_events(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.is_file() else {}
