"""FLUX.1-architecture: sdcli vs the plain diffusers script, time to first image and per-image cost.

    python benchmarks/bench_flux.py                     # ~10 min on 2 CPU cores
    python benchmarks/bench_flux.py --quick             # smoke mode (tests/test_benchmarks.py)

The model is `sdcli.diagnostics.tiny_families`' random-weight FLUX.1-dev (CLIP + T5 + a 1+1-block transformer,
256x256 native), built once into the benchmark cache. The measuring is bench_generate.py's, unchanged: both
sides get `--guidance 7 --steps 2` at the native size, and their pixels are compared, so they do the same
work. Only the AutoPipeline baseline applies: the concrete-class one is StableDiffusionPipeline."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_generate  # noqa: E402
import benchkit as bk  # noqa: E402


def ensure_flux(root: Path | None = None) -> Path:
    root = root or bk.model_cache()
    folder = root / "flux-tiny"
    if (folder / "model_index.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".flux-tiny-", dir=root))
    code = (
        "import sys\n"
        "from sdcli.diagnostics.tiny import TinySpec\n"
        "from sdcli.diagnostics.tiny_families import build_tiny_family_pipeline\n"
        "build_tiny_family_pipeline(TinySpec('flux')).save_pretrained(sys.argv[1])\n"
    )
    bk.note(f"building the FLUX.1-architecture random-weight pipeline in {folder} ...")
    bk.run([bk.PY, "-c", code, str(tmp / "model")])
    os.replace(tmp / "model", folder)
    tmp.rmdir()
    return folder


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    models = None
    if "--models" in args:
        models = Path(args[args.index("--models") + 1])
    if "--model" not in args:
        args += ["--model", str(ensure_flux(models))]
    if "--quick" not in args:
        args = ["--reps", "5", "--breakdown-reps", "2", "--batch-reps", "3", "--count", "8", *args]
    print("FLUX.1 architecture (the tables' 'SD 1.x' labels come from bench_generate.py)\n")
    return bench_generate.main(["--baselines", "auto", *args])


if __name__ == "__main__":
    sys.exit(main())
