"""sdcli generate vs the plain diffusers script, each in fresh processes, on random-weight SD 1.x pipelines.

    python benchmarks/bench_generate.py            # everything: about 20 minutes on a 2-core CPU
    python benchmarks/bench_generate.py --quick    # smoke: one run of each side, two at a time, tiny model
    python benchmarks/bench_generate.py --only first --reps 9

Sections (`--only first,batch`):

  first  Time to first image: one `sdcli generate` process vs one plain_diffusers.py process (same model
         folder, prompt, steps, guidance, size, seed, one PNG): wall and CPU seconds and peak RSS, with a
         stage-by-stage breakdown from benchmarks/probe.py. Targets: time <= 0.95x, peak RSS <= 1.1x.
         Model: --model-spec (w8s128: 256x256).
  batch  Steady state: the time between consecutive images inside one 20-prompt `--prompts-file` run vs
         the plain script's loop (target <= 1.02x), with the plain loop once more as an A/A noise check;
         and batch amortisation: 20 separate `sdcli generate` calls vs that one call (target >= 5x faster).
         Model: --batch-spec (w8s64: 128x128).

Models are sdcli.diagnostics.tiny pipelines scaled up (`wWsS`: every layer `W` wide, latents `S` square,
images 2S square), built once into ~/.cache/sdcli-bench (or $SDCLI_BENCH_MODELS). Both sides are checked to
write the same pixels, so they do the same work. Runs alternate (A B, B A, ...) so that load from other
processes hits both alike, after a warm-up round; the tables report medians. Children run with --threads torch
threads (default 1: see --help) and bytecode caching on."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import benchkit as bk

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
SUBJECTS = ("a red boat", "a cat in a hat", "a lighthouse", "a bowl of fruit", "a mountain lake")


@dataclass
class Setup:
    model: Path
    steps: int
    work: Path
    env: dict[str, str]
    probe: bool = False
    _n: Any = None

    def next_name(self, stem: str) -> Path:
        if self._n is None:
            self._n = count()
        return self.work / f"{stem}-{next(self._n)}"

    def common(self) -> list[str]:
        # No size: both sides use the model's native size (sdcli's default, and diffusers').
        return ["--steps", str(self.steps), "--seed", "1", "--device", "cpu"]

    def launcher(self, events: Path | None) -> list[str]:
        return [bk.PY, str(bk.HERE / "probe.py"), str(events)] if events else [bk.PY]

    def sdcli(self, *args: str, events: Path | None = None) -> list[str]:
        base = ["generate", *args, "-m", str(self.model), "--cfg", "7", *self.common()]
        return [*self.launcher(events), "-m", "sdcli", *base] if events else [bk.PY, "-m", "sdcli", *base]

    def plain(self, loader: str, *args: str, events: Path | None = None) -> list[str]:
        script = str(bk.HERE / "plain_diffusers.py")
        rest = [str(self.model), *args, "--guidance", "7", "--loader", loader, *self.common()]
        return [*self.launcher(events), script, *rest]


def probed(argv_for: Callable[[Path | None], list[str]], setup: Setup) -> Callable[[], bk.Sample]:
    """A side that runs under benchmarks/probe.py and keeps the events it recorded."""

    def side() -> bk.Sample:
        events = setup.next_name("events").with_suffix(".json")
        sample = bk.run(argv_for(events), env=setup.env)
        sample.events = bk.read_events(events)
        return sample

    return side


def row(
    measure: str, ours: list[bk.Sample], theirs: list[bk.Sample], key: str, unit: str, target: str
) -> bk.Row:
    """Medians of one Sample field for both sides."""
    return bk.Row(
        measure,
        bk.median([getattr(s, key) for s in ours]),
        bk.median([getattr(s, key) for s in theirs]),
        unit,
        target,
    )


def plain_run(argv_for: Callable[[Path | None], list[str]], setup: Setup) -> Callable[[], bk.Sample]:
    return lambda: bk.run(argv_for(None), env=setup.env)


# --- where the time goes ---------------------------------------------------------------------------------

STAGES = ("start-up + imports", "load", "denoise", "decode", "save", "other", "total")


def _within(inner: dict[str, float], outer: list[dict[str, float]]) -> bool:
    return any(o["start"] <= inner["start"] and inner["end"] <= o["end"] for o in outer)


def breakdown(sample: bk.Sample) -> dict[str, float]:
    """Seconds per stage of one probed run, measured from the moment the parent started the process."""
    events: list[dict[str, Any]] = sample.events.get("events", [])

    def of(kind: str) -> list[dict[str, float]]:
        return [e for e in events if e["kind"] == kind]

    def total(items: list[dict[str, float]]) -> float:
        return sum(e["end"] - e["start"] for e in items)

    loads, calls = of("load"), of("call")
    decodes = of("decode") + of("postprocess")
    writes = of("write") or of("save")  # sdcli's write_png wraps PIL's save: count the whole atomic write
    stages = {
        "start-up + imports": (min(e["start"] for e in loads) - sample.started) if loads else float("nan"),
        "load": total(loads) + total([e for e in of("to") if not _within(e, loads)]),
        "denoise": total(calls) - total([e for e in decodes if _within(e, calls)]),
        "decode": total(decodes),
        "save": total(writes),
        "total": sample.wall,
    }
    stages["other"] = stages["total"] - sum(v for k, v in stages.items() if k != "total")
    return stages


def _writes(sample: bk.Sample) -> list[dict[str, float]]:
    events = sample.events.get("events", [])
    writes = [e for e in events if e["kind"] == "write"] or [e for e in events if e["kind"] == "save"]
    return sorted(writes, key=lambda e: e["end"])


def image_times(sample: bk.Sample) -> list[float]:
    """When each image was complete on disk, seconds after the process started."""
    return [e["end"] - sample.started for e in _writes(sample)]


def steady_gaps(samples: list[bk.Sample], clock: str = "end") -> list[float]:
    """Wall ("end") or process CPU ("cpu") seconds between consecutive images on disk; the first image
    carries start-up and loading, so it is never part of a gap."""
    gaps = []
    for sample in samples:
        marks = [e[clock] for e in _writes(sample)]
        gaps += [b - a for a, b in zip(marks, marks[1:], strict=False)]
    return gaps


def per_image_stage(samples: list[bk.Sample], stage: str) -> float:
    """Median seconds of one stage per image, leaving out each run's first image (warm-up)."""
    values = []
    for sample in samples:
        events = sample.events.get("events", [])
        decodes = [e for e in events if e["kind"] in ("decode", "postprocess")]
        if stage == "save":
            durations = [e["end"] - e["start"] for e in _writes(sample)]
        elif stage == "decode":
            # One decode and one post-processing per image (sdcli: after the call; plain: inside it).
            starts = sorted((e for e in events if e["kind"] == "decode"), key=lambda e: e["start"])
            posts = sorted((e for e in events if e["kind"] == "postprocess"), key=lambda e: e["start"])
            durations = [
                a["end"] - a["start"] + b["end"] - b["start"] for a, b in zip(starts, posts, strict=False)
            ]
        else:
            calls = sorted((e for e in events if e["kind"] == "call"), key=lambda e: e["start"])
            durations = [
                c["end"] - c["start"] - sum(d["end"] - d["start"] for d in decodes if _within(d, [c]))
                for c in calls
            ]
        values += durations[1:]
    return bk.median(values)


def breakdown_table(title: str, runs: dict[str, list[bk.Sample]]) -> str:
    parts = {name: [breakdown(s) for s in samples] for name, samples in runs.items()}
    rows = []
    for stage in STAGES:
        rows.append([stage, *(f"{bk.median([p[stage] for p in parts[name]]):.3f}" for name in runs)])
    first = [f"{bk.median([image_times(s)[0] for s in samples]):.3f}" for samples in runs.values()]
    rows.append(["first image on disk at", *first])
    return bk.plain_table(title, ["seconds (median)", *runs], rows)


# --- pixels ----------------------------------------------------------------------------------------------


def same_pixels(a: Path, b: Path) -> str:
    from PIL import Image, ImageChops

    with Image.open(a) as x, Image.open(b) as y:
        if x.size != y.size:
            return f"no: sizes {x.size} and {y.size}"
        extrema = ImageChops.difference(x.convert("RGB"), y.convert("RGB")).getextrema()
        worst = max(hi for _, hi in extrema)
    return "identical" if worst == 0 else f"differ by up to {worst} levels"


# --- sections --------------------------------------------------------------------------------------------


def first_image(
    setup: Setup, baselines: list[str], reps: int, breakdown_reps: int, warmup: int, parallel: bool = False
) -> tuple[list[str], list[bk.Sample]]:
    """The tables, and the sdcli runs (which --quick reuses as a separate call of the batch section)."""
    out: list[str] = []
    pngs: dict[str, Path] = {}

    def sdcli_argv(events: Path | None) -> list[str]:
        pngs["sdcli"] = setup.next_name("sdcli").with_suffix(".png")
        return setup.sdcli(PROMPT, "-o", str(pngs["sdcli"]), events=events)

    def plain_argv(loader: str) -> Callable[[Path | None], list[str]]:
        def argv(events: Path | None) -> list[str]:
            pngs[loader] = setup.next_name(loader).with_suffix(".png")
            return setup.plain(loader, PROMPT, "--out", str(pngs[loader]), events=events)

        return argv

    names = {"auto": "plain (AutoPipeline)", "class": "plain (SD class)"}
    argvs = {"sdcli": sdcli_argv, **{names[b]: plain_argv(b) for b in baselines}}
    raw: dict[str, list[bk.Sample]] = {}
    if reps:
        bk.note(f"first image: {reps} interleaved repetitions of {', '.join(argvs)}")
        raw = bk.interleave({n: plain_run(a, setup) for n, a in argvs.items()}, reps, warmup=warmup)
        warmup = 0
    bk.note(f"first image, probed: {breakdown_reps} repetitions")
    sides = {n: probed(a, setup) for n, a in argvs.items()}
    probes = bk.interleave(sides, breakdown_reps, warmup=warmup, parallel=parallel)
    source = "" if reps else " (from the probed runs: --reps 0)"
    measured = raw if reps else probes
    for name in argvs:
        if name == "sdcli":
            continue
        ours, theirs = measured["sdcli"], measured[name]
        rows = [
            row("time to first image (wall)", ours, theirs, "wall", "s", "<= 0.95"),
            row("CPU time (user+sys)", ours, theirs, "cpu", "s", ""),
            row("peak RSS", ours, theirs, "rss_mb", "MB", "<= 1.1"),
        ]
        n = len(ours)
        out.append(bk.table(f"First image: sdcli vs {name}, median of {n}{source}", rows, theirs=name))
    out.append(breakdown_table(f"Where the time goes (probed, median of {breakdown_reps})", probes))
    baseline = names[baselines[0]] if baselines else None
    if baseline and baselines[0] in pngs:
        out.append(f"Pixels, sdcli vs {baseline}: {same_pixels(pngs['sdcli'], pngs[baselines[0]])}")
    return out, measured["sdcli"]


def batch(
    setup: Setup,
    n_images: int,
    reps: int,
    separate: int,
    loader: str,
    singles: list[bk.Sample] | None = None,
    parallel: bool = False,
    aa: bool = False,
) -> list[str]:
    """`singles`: separate calls already timed on this model (--quick reuses the first-image run)."""
    prompts = setup.work / "prompts.txt"
    prompts.write_text("".join(f"{SUBJECTS[i % len(SUBJECTS)]}, number {i}\n" for i in range(n_images)))
    folders: dict[str, Path] = {}

    def sdcli_argv(events: Path | None) -> list[str]:
        folders["sdcli"] = setup.next_name("sdcli-batch")
        template = str(folders["sdcli"] / "{seed}.png")
        return setup.sdcli("--prompts-file", str(prompts), "-o", template, events=events)

    def plain_argv(events: Path | None) -> list[str]:
        folders["plain"] = setup.next_name("plain-batch")
        return setup.plain(
            loader, "--prompts-file", str(prompts), "--out", str(folders["plain"]), events=events
        )

    def one_call(i: int) -> bk.Sample:
        png = setup.next_name("single").with_suffix(".png")
        argv = setup.sdcli(f"{SUBJECTS[i % len(SUBJECTS)]}, number {i}", "-o", str(png))
        argv[argv.index("--seed") + 1] = str(1 + i)
        sample = bk.run(argv, env=setup.env)
        bk.note(f"  separate call {i + 1}/{separate}: {sample.wall:.2f} s")
        return sample

    bk.note(f"batch: {reps} interleaved repetitions of {n_images} images, and {separate} separate calls")
    sides = {"sdcli": probed(sdcli_argv, setup), "plain": probed(plain_argv, setup)}
    if aa:
        # The plain loop again, as a third side: plain vs plain shows how far noise alone moves a ratio.
        sides["plain (A/A)"] = probed(plain_argv, setup)
    runs: dict[str, list[bk.Sample]] = {name: [] for name in sides}
    singles = list(singles or [])
    todo = list(range(len(singles), separate))
    for rep in range(reps):
        # A share of the separate calls first (the first of them also warm the page cache), then both sides.
        share, todo = todo[: len(todo) // (reps - rep)], todo[len(todo) // (reps - rep) :]
        singles += [one_call(i) for i in share]
        ordered = sides if rep % 2 == 0 else dict(reversed(list(sides.items())))
        for name, samples in bk.interleave(ordered, 1, warmup=0, parallel=parallel, log=False).items():
            runs[name] += samples
            bk.note(f"  rep {rep + 1}/{reps} {name}: {samples[0].wall:.2f} s wall")

    label = "plain loop (AutoPipeline)" if loader == "auto" else "plain loop (SD class)"
    rows = [
        bk.Row(
            "per image, steady state (wall gap between images)",
            bk.median(steady_gaps(runs["sdcli"])),
            bk.median(steady_gaps(runs["plain"])),
            "s",
            "<= 1.02",
        ),
        bk.Row(
            "per image, steady state (CPU time between images)",
            bk.median(steady_gaps(runs["sdcli"], "cpu")),
            bk.median(steady_gaps(runs["plain"], "cpu")),
            "s",
            "",
        ),
    ]
    for stage in ("denoise", "decode", "save"):
        ours, theirs = per_image_stage(runs["sdcli"], stage), per_image_stage(runs["plain"], stage)
        rows.append(bk.Row(f"  of which {stage} (median per image)", ours, theirs, "s", ""))
    if aa:
        again, plain = bk.median(steady_gaps(runs["plain (A/A)"])), bk.median(steady_gaps(runs["plain"]))
        rows.append(bk.Row("noise check: the plain loop vs itself (A/A), wall gap", again, plain, "s", ""))
    gaps = len(steady_gaps(runs["sdcli"]))
    title = (
        f"Steady state inside a batch of {n_images}: sdcli vs {label}, median of {gaps} gaps in {reps} runs"
    )
    out = [bk.table(title, rows, theirs=label)]
    batch_wall = bk.median([s.wall for s in runs["sdcli"]])
    separate_total = sum(s.wall for s in singles) * n_images / max(len(singles), 1)
    how = (
        f"sum of {len(singles)} calls"
        if len(singles) == n_images
        else f"{len(singles)} calls, scaled to {n_images}"
    )
    measure = f"{n_images} images: separate calls ({how}) / one call"
    amortisation = [bk.Row(measure, separate_total, batch_wall, "s", ">= 5")]
    out.append(
        bk.table("Batch amortisation", amortisation, ours="separate calls", theirs="one --prompts-file call")
    )
    s_one = bk.median([s.wall for s in singles])
    per = bk.median(steady_gaps(runs["sdcli"]))
    fixed = s_one - per
    out.append(
        f"One call costs F + I with F = {fixed:.2f} s fixed (start-up, imports, load, exit) and "
        f"I = {per:.2f} s per image, so {n_images} separate calls / one call = "
        f"{n_images}(F+I) / (F+{n_images}I); "
        f">= 5x needs I <= {3 * fixed / 16:.2f} s (15F >= 80I)."
    )
    sdcli_png = sorted(folders["sdcli"].glob("*.png"))[0]
    plain_png = sorted(folders["plain"].glob("*.png"))[0]
    out.append(f"Pixels of the first image, sdcli vs plain loop: {same_pixels(sdcli_png, plain_png)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: 1 run of each, test-sized model")
    parser.add_argument("--only", default="first,batch", help="sections: first, batch")
    parser.add_argument("--reps", type=int, default=5, help="plain runs per side for time to first image")
    parser.add_argument(
        "--breakdown-reps", type=int, default=3, help="probed runs per side for the breakdown"
    )
    parser.add_argument("--batch-reps", type=int, default=5, help="batch runs per side")
    parser.add_argument("--count", type=int, default=20, help="images in the batch")
    parser.add_argument("--separate", type=int, help="separate calls to time (default: --count)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--model-spec", default="w8s128", help="first-image model: width, latent size")
    parser.add_argument("--batch-spec", default="w8s64", help="batch model (w8s32: the tests' tiny model)")
    parser.add_argument("--model", type=Path, help="use this saved SD 1.x folder for every section instead")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for both sides (0: torch's default). On a shared 2-core machine, 2 OpenMP "
        "threads wait on each other whenever one is descheduled: per-image times then varied 0.2-7.8 s",
    )
    parser.add_argument("--baselines", default="auto,class", help="plain script loaders: auto, class")
    parser.add_argument(
        "--models", type=Path, help="where built models are kept (default ~/.cache/sdcli-bench)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        # One probed run per side gives the first-image numbers and the breakdown; that sdcli run is also
        # the one "separate call" of the batch section when both use the same model. The two sides run at
        # the same time: --quick checks that the benchmark works, its numbers are not comparable.
        args.reps, args.breakdown_reps, args.batch_reps, args.count = 0, 1, 1, 2
        args.separate, args.steps, args.model_spec, args.baselines = 1, 1, "w8s32", "auto"
    sections = {s.strip() for s in args.only.split(",")}
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]

    def model(spec_text: str) -> tuple[Path, str]:
        if args.model:
            return args.model, f"{args.model.name} (given)"
        spec = bk.ModelSpec.parse(spec_text)
        return bk.ensure_model(spec, args.models), f"{spec.name} ({spec.pixels}x{spec.pixels})"

    env = bk.child_env(**({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    threads = f"{args.threads} torch thread(s)" if args.threads else "torch's default threads"
    print(f"Machine: {bk.machine()}\nBoth sides run with {threads}.\n")
    singles: dict[Path, list[bk.Sample]] = {}
    with tempfile.TemporaryDirectory(prefix="sdcli-bench-") as tmp:
        work = Path(tmp)
        if "first" in sections:
            folder, name = model(args.model_spec)
            setup = Setup(folder, args.steps, work, env)
            print(f"First image: SD 1.x random weights {name}, {args.steps} steps, guidance 7, CPU fp32\n")
            tables, sdcli_runs = first_image(
                setup, baselines, args.reps, args.breakdown_reps, not args.quick, parallel=args.quick
            )
            print("\n\n".join(tables) + "\n")
            if args.quick:
                singles[folder] = sdcli_runs
        if "batch" in sections:
            folder, name = model(args.batch_spec)
            setup = Setup(folder, args.steps, work, env)
            print(f"Batch: SD 1.x random weights {name}, {args.steps} steps, guidance 7, CPU fp32\n")
            separate = args.count if args.separate is None else args.separate
            tables = batch(
                setup,
                args.count,
                args.batch_reps,
                separate,
                baselines[0],
                singles.get(folder),
                parallel=args.quick,
                aa=not args.quick,
            )
            print("\n\n".join(tables) + "\n")
    print(f"Load average at the end: {bk.load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
