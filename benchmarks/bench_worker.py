"""Warm worker: N separate `sdcli generate` calls in a shell loop with `sdcli serve` up vs without (#18).

    python benchmarks/bench_worker.py                 # 20 calls each way, median of 3 loops (target >= 5x)
    python benchmarks/bench_worker.py --quick         # 2 calls, 1 loop (smoke)
    python benchmarks/bench_worker.py --model DIR     # any local diffusers folder

Both loops are the same `bash -c 'for i in ...; do python -m sdcli generate ...; done'`, one with
SDCLI_WORKER pointing at a worker started (and warmed by one call) beforehand, one with SDCLI_WORKER=off.
Also reported: the in-process per-image cost (the `seconds` a warm call's --json reports, the same loop as a
cold run's steady state), how far a warm call is above it (target <= 0.3 s), and the warm client's own
start-up: its wall time minus that per-image cost, and whether it imported torch (it must not).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchkit as bk

PROBE = (
    "import sys, runpy\n"
    "sys.argv = ['sdcli', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('sdcli', run_name='__main__')\n"
    "finally:\n"
    "    heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
    "    sys.stderr.write('HEAVY ' + (','.join(heavy) or 'none') + '\\n')\n"
)


def start_worker(folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    path = folder / "w.sock"
    process = subprocess.Popen(
        [bk.PY, "-m", "sdcli", "serve", "--quiet", "--socket", str(path), "--keep-alive", "-1"],
        env=bk.child_env(SDCLI_WORKER="off", OMP_NUM_THREADS="1"),  # as the loops have it
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            return process, path
        except OSError:
            assert process.poll() is None, "the worker exited"
            time.sleep(0.05)
        finally:
            probe.close()
    raise RuntimeError("the worker did not start")


def loop(calls: int, model: Path, steps: int, out: Path, worker: str) -> bk.Sample:
    generate = (
        f"{shlex.quote(bk.PY)} -m sdcli generate 'a cat' -m {shlex.quote(str(model))} --steps {steps}"
        f' --seed "$i" -o {shlex.quote(str(out))}/"$i".png --overwrite -q'
    )
    script = f"for i in $(seq {calls}); do {generate} || exit 1; done"
    return bk.run(["bash", "-c", script], env=bk.child_env(SDCLI_WORKER=worker, OMP_NUM_THREADS="1"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 calls, 1 loop: a smoke test")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3, help="loops per side (median)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--model", type=Path, help="diffusers folder (default: a tiny 64x64 random pipeline)")
    args = parser.parse_args(argv)
    calls, reps = (2, 1) if args.quick else (args.calls, args.reps)
    model = args.model or bk.ensure_model(bk.ModelSpec(8, 32))
    bk.note(bk.machine())
    with tempfile.TemporaryDirectory(prefix="sdcli-bench-worker-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o700)
        process, sock = start_worker(folder)
        try:
            probe_args = ["generate", "warm", "-m", str(model), "--steps", str(args.steps), "--seed", "1"]
            probe_args += ["-o", str(folder / "probe.png"), "--overwrite", "--json"]
            env = bk.child_env(SDCLI_WORKER=str(sock), OMP_NUM_THREADS="1")
            bk.run([bk.PY, "-c", PROBE, *probe_args], env=env)  # loads the model into the worker
            warm_calls = [bk.run([bk.PY, "-c", PROBE, *probe_args], env=env) for _ in range(max(3, reps))]
            heavy = {s.stderr.strip().splitlines()[-1].split()[1] for s in warm_calls}
            per_image = bk.median(
                [json.loads(s.stdout.splitlines()[0])["seconds"] for s in warm_calls]
            )  # the loop's own per-image cost, inside the worker (the same code a cold run times)
            warm_wall = bk.median([s.wall for s in warm_calls])
            results = bk.interleave(
                {
                    "warm": lambda: loop(calls, model, args.steps, folder / "warm", str(sock)),
                    "cold": lambda: loop(calls, model, args.steps, folder / "cold", "off"),
                },
                reps,
                warmup=0,
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    warm = bk.median([s.wall for s in results["warm"]])
    cold = bk.median([s.wall for s in results["cold"]])
    rows = [bk.Row(f"{calls} generate calls in a shell loop (wall)", cold, warm, "s", ">= 5")]
    print(bk.table(f"Warm worker vs cold runs ({calls} calls, median of {reps})", rows, "cold", "warm"))
    print()
    print(
        bk.plain_table(
            "One warm call",
            ("measure", "value", "target"),
            [
                ("warm call, one image (wall, from the loop)", f"{warm / calls:.3f} s", ""),
                ("in-process per-image cost (reported by the run)", f"{per_image:.3f} s", ""),
                ("warm call above the per-image cost", f"{warm / calls - per_image:.3f} s", "<= 0.3 s"),
                ("warm client start-up (probe wall - per-image)", f"{warm_wall - per_image:.3f} s", ""),
                ("heavy modules the warm client imported", ",".join(sorted(heavy)), "none"),
            ],
        )
    )
    return 0 if heavy == {"none"} else 1


if __name__ == "__main__":
    sys.exit(main())
