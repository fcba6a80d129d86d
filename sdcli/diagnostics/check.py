"""`sdcli info --check`: prove the torch/diffusers stack makes a valid image on a device, in timed stages.

The check is a list of named stages run in order over one shared state. A stage that raises becomes
`StageFailed` ("stage 'verify' failed: ...", exit 7) carrying the timings so far, so a CI log says where the
stack broke. Errors with their own exit code pass through untouched: a missing device is exit 5 and is found
before any stage runs; a model that is not there is exit 3. Nothing is downloaded: the default check builds a
tiny random-weight pipeline in memory, and `--model` accepts only a local folder or an already-cached Hub id.
"""

from __future__ import annotations

import importlib
import io
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sdcli.core.requests import DEFAULT_MODEL, ModelRequest
from sdcli.errors import CheckFailed, SdcliError, first_line

STEPS = 2
PROMPT = "a red apple on a wooden table"
GUIDANCE = 7.0  # above 1, so the check also runs the classifier-free-guidance batch of two
MAX_SIZE = 256  # a real model is checked at most this size: enough to run every layer, fast on any GPU
BLACK_LEVEL = 8  # a real model's image whose brightest value is below this is "all black"
TINY = "tiny"


@dataclass(frozen=True)
class StageTime:
    name: str
    seconds: float
    ok: bool = True


@dataclass(frozen=True)
class CheckReport:
    model: str  # "tiny" for the in-memory random-weight pipeline
    device: str
    dtype: str
    steps: int = STEPS
    width: int | None = None
    height: int | None = None
    pipeline: str | None = None
    stages: tuple[StageTime, ...] = ()
    failed_stage: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total_seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "model": self.model,
            "pipeline": self.pipeline,
            "device": self.device,
            "dtype": self.dtype,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "stages": [{"name": s.name, "seconds": round(s.seconds, 4), "ok": s.ok} for s in self.stages],
            "total_seconds": round(self.total_seconds, 4),
            "failed_stage": self.failed_stage,
            "error": self.error,
        }


class StageFailed(CheckFailed):
    def __init__(self, stage: str, cause: str, report: CheckReport, hint: str | None = None) -> None:
        super().__init__(f"stage '{stage}' failed: {cause}", hint or "run again with --debug for details")
        self.stage = stage
        self.report = report


@dataclass
class _Run:
    """What the stages hand on to each other; mutable on purpose, private to one check."""

    request: ModelRequest
    model: str | None  # None: the tiny in-memory pipeline
    device: Any
    dtype: Any
    steps: int
    pipe: Any = None
    width: int = 0
    height: int = 0
    pixels: Any = None
    hint: str | None = None


Stage = tuple[str, Callable[[_Run], None]]
# What the tiny pipeline is made of: importing them in "import" keeps import time out of "build".
_TINY_PARTS = {
    "diffusers": ("AutoencoderKL", "PNDMScheduler", "StableDiffusionPipeline", "UNet2DConditionModel"),
    "transformers": ("CLIPTextModel", "CLIPTokenizer"),
}


def _import(run: _Run) -> None:
    from sdcli.model import pipelines

    # First, so the libraries' import-time warnings (meant for notebooks) stay off the report.
    pipelines.quiet_libraries()
    parts = _TINY_PARTS if run.model is None else {"diffusers": (), "transformers": ()}
    for module, names in parts.items():
        imported = importlib.import_module(module)
        for name in names:  # diffusers and transformers import lazily, on first attribute access
            getattr(imported, name)


def _build(run: _Run) -> None:
    from sdcli.diagnostics.tiny import build_tiny_pipeline

    run.pipe = build_tiny_pipeline()
    run.pipe.set_progress_bar_config(disable=True)


def _to_device(run: _Run) -> None:
    run.pipe = run.pipe.to(device=run.device, dtype=run.dtype, silence_dtype_warnings=True)


@contextmanager
def _offline() -> Iterator[None]:
    """Refuse downloads for the duration of a check, whatever the shell says."""
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def _load(run: _Run) -> None:
    from sdcli.model import pipelines

    with _offline():
        run.pipe = pipelines.load_model(run.request).pipe


def _size(run: _Run) -> tuple[int, int]:
    from sdcli.generation.engine import native_size

    width, height = native_size(run.pipe)
    if run.model is None:
        return width, height
    return min(width, MAX_SIZE), min(height, MAX_SIZE)


def _denoise(run: _Run) -> None:
    from sdcli.generation import family_runs
    from sdcli.model.families import of_pipeline
    from sdcli.model.runtime import generators

    run.width, run.height = _size(run)
    call = dict(
        prompt=PROMPT,
        num_inference_steps=run.steps,
        guidance_scale=GUIDANCE,
        width=run.width,
        height=run.height,
        generator=generators([0])[0],
        output_type="np",
    )
    # The CFG goes where generate puts it: a pipeline may take it under another name or in its guider
    # (HunyuanImage's __call__ has no guidance_scale and refuses one).
    family = of_pipeline(run.pipe)
    with family_runs.guided(family, run.pipe, GUIDANCE):
        output = run.pipe(**family_runs.call_arguments(family, run.pipe, call))
    run.pixels = output.images[0]


def _verify(run: _Run) -> None:
    import numpy as np
    from PIL import Image

    from sdcli.model.runtime import dtype_name

    pixels = np.asarray(run.pixels)
    expected = (run.height, run.width, 3)
    if pixels.shape != expected:
        raise CheckFailed(f"the decoded image has shape {pixels.shape}, expected {expected}")
    finite = np.isfinite(pixels)
    if not finite.all():
        if dtype_name(run.dtype) == "fp16":
            run.hint = "half precision overflowed on this device; try --dtype fp32 (or bf16)"
        raise CheckFailed(f"{1 - finite.mean():.0%} of the decoded image's values are NaN or Inf")
    rgb = (pixels * 255).round().clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    with Image.open(io.BytesIO(buffer.getvalue())) as back:
        back.load()
        if back.mode != "RGB" or back.size != (run.width, run.height):
            raise CheckFailed(
                f"the PNG reads back as {back.mode} {back.size}, not RGB {run.width}x{run.height}"
            )
        if not np.array_equal(np.asarray(back), rgb):
            raise CheckFailed("the PNG reads back with different pixels")
    # Random tiny weights may legitimately draw a dark image; a real model's black image means NaNs upstream
    # or a safety checker blanking it.
    if run.model is not None and int(rgb.max()) < BLACK_LEVEL:
        raise CheckFailed(f"the image is all black (brightest value {int(rgb.max())} of 255)")


def stages(model: str | None) -> list[Stage]:
    if model is None:
        return [
            ("import", _import),
            ("build", _build),
            ("to-device", _to_device),
            ("denoise+decode", _denoise),
            ("verify", _verify),
        ]
    # Loading puts the weights straight on the device, so there is no separate to-device stage.
    return [("import", _import), ("load", _load), ("denoise+decode", _denoise), ("verify", _verify)]


def _synchronize(device: Any) -> None:
    """Wait for queued GPU work, so each stage's time is its own and its errors surface in it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def run_check(
    device: str = "auto",
    dtype: str = "auto",
    model: str | None = None,
    *,
    steps: int = STEPS,
    on_stage: Callable[[str], None] | None = None,
) -> CheckReport:
    """Run every stage; return their timings, or raise StageFailed naming the first that failed."""
    from sdcli.model import runtime

    request = ModelRequest(model or DEFAULT_MODEL, device=device, dtype=dtype).validated()
    # Before any stage: a device that is not there is exit 5 with what torch sees, not a failed stage.
    torch_device = runtime.resolve_device(request.device)
    torch_dtype, _ = runtime.resolve_dtype(request.dtype, torch_device)
    run = _Run(
        request, model=request.model if model else None, device=torch_device, dtype=torch_dtype, steps=steps
    )
    done: list[StageTime] = []

    def report(**extra: Any) -> CheckReport:
        return CheckReport(
            model=run.model or TINY,
            device=str(torch_device),
            dtype=runtime.dtype_name(torch_dtype),
            steps=steps,
            width=run.width or None,
            height=run.height or None,
            pipeline=type(run.pipe).__name__ if run.pipe is not None else None,
            stages=tuple(done),
            **extra,
        )

    for name, stage in stages(run.model):
        if on_stage is not None:
            on_stage(name)
        began = time.perf_counter()
        error: Exception | None = None
        cause = ""
        try:
            stage(run)
            _synchronize(torch_device)
        except CheckFailed as exc:
            error, cause = exc, exc.message
        except SdcliError:  # its own exit code says more than "a stage failed"
            raise
        except Exception as exc:
            error, cause = exc, f"{type(exc).__name__}: {first_line(exc)}"
        done.append(StageTime(name, time.perf_counter() - began, ok=error is None))
        if error is not None:
            failed = report(failed_stage=name, error=f"stage '{name}' failed: {cause}")
            raise StageFailed(name, cause, failed, hint=run.hint) from error
    return report()


def not_run(device: str, dtype: str, model: str | None, error: SdcliError) -> CheckReport:
    """The report of a check that stopped outside a stage (no such device, no such model)."""
    if isinstance(error, StageFailed):
        return error.report
    return CheckReport(model=model or TINY, device=device, dtype=dtype, error=error.message)
