"""Start-up: `sdcli --help` and `sdcli generate --help` vs `python -c "import typer, rich"` (target <= 1.5x).

    python benchmarks/bench_startup.py              # 20 interleaved repetitions
    python benchmarks/bench_startup.py --quick      # 1 repetition (smoke)
    python benchmarks/bench_startup.py --importtime # also: what sdcli imports beyond typer and rich

Each command runs as a fresh process (`python -m sdcli`, this checkout first on PYTHONPATH, bytecode cached
after a warm-up round, as an installed package has it); the three alternate so that load from other
processes hits them alike. Wall and CPU (user + system) times are medians.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import benchkit as bk

BASELINE = [bk.PY, "-c", "import typer, rich"]
COMMANDS = {
    "sdcli --help": [bk.PY, "-m", "sdcli", "--help"],
    "sdcli generate --help": [bk.PY, "-m", "sdcli", "generate", "--help"],
}


def import_times(argv: list[str]) -> dict[str, tuple[int, int]]:
    """`python -X importtime`: {module: (self us, cumulative us)}."""
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, env=bk.child_env()
    )
    found = {}
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, cumulative, name = line.removeprefix("import time:").split("|")
            found[name.strip()] = (int(self_us), int(cumulative))
    return found


def extra_imports(argv: list[str], top: int = 12) -> str:
    """Packages a command imports that the baseline does not, by their own (self) import time."""
    base, ours = import_times(BASELINE), import_times(argv)
    by_package: dict[str, int] = {}
    for name, (self_us, _) in ours.items():
        if name not in base:
            package = name.split(".")[0]
            by_package[package] = by_package.get(package, 0) + self_us
    rows = sorted(by_package.items(), key=lambda item: -item[1])[:top]
    total = sum(by_package.values())
    lines = [f"{name:<24}{us / 1000:8.1f} ms" for name, us in rows]
    return (
        f"Imported beyond typer+rich by `{' '.join(argv[2:])}` ({total / 1000:.1f} ms, one run):\n"
        + "\n".join("    " + line for line in lines)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="1 repetition, no warm-up (smoke)")
    parser.add_argument(
        "--importtime", action="store_true", help="list what sdcli imports beyond the baseline"
    )
    args = parser.parse_args(argv)
    reps, warmup = (1, 0) if args.quick else (args.reps, 2)
    print(f"Machine: {bk.machine()}\n")
    sides = {name: (lambda a=argv: bk.run(a)) for name, argv in {"baseline": BASELINE, **COMMANDS}.items()}
    runs = bk.interleave(sides, reps, warmup=warmup, log=False)
    for name in COMMANDS:
        assert "Usage:" in runs[name][0].stdout, runs[name][0].stdout
    rows = []
    for name in COMMANDS:
        ours, theirs = runs[name], runs["baseline"]
        for key, label, target in (("wall", "wall", "<= 1.5"), ("cpu", "CPU", "")):
            mine, base = (bk.median([getattr(s, key) for s in side]) * 1000 for side in (ours, theirs))
            rows.append(bk.Row(f"{name} ({label})", mine, base, "ms", target))
    print(bk.table(f"Start-up, median of {reps}", rows, theirs='python -c "import typer, rich"'))
    if args.importtime:
        for command in COMMANDS.values():
            print("\n" + extra_imports(command))
    print(f"\nLoad average at the end: {bk.load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
