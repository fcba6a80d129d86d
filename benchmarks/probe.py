"""Run sdcli or a script with timestamps around the stages of making an image, on the same ruler for both.

    python benchmarks/probe.py EVENTS.json -m sdcli generate "a cat" ...
    python benchmarks/probe.py EVENTS.json benchmarks/plain_diffusers.py MODEL "a cat" ...

The target runs unchanged (through runpy, as `python -m` and `python script.py` do); the probe only wraps
library functions that both sides call when their modules are first imported:

  load     the outermost `from_pretrained` of a pipeline (AutoPipeline or concrete class) and `.to(...)`
  denoise  each pipeline `__call__`, minus the VAE decode and post-processing inside it
  decode   `AutoencoderKL.decode` and `VaeImageProcessor.postprocess`
  save     `PIL.Image.Image.save`, or sdcli's whole atomic `write_png` (temporary file, fsync, link)

Times are `time.time()` seconds, so the parent can align them with the moment it started the process; each
event also records `time.process_time()` at its end (CPU time is far less disturbed by other processes).
Everything before the first `from_pretrained` is start-up and imports (and, for sdcli, argument parsing).
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.machinery
import json
import os
import runpy
import sys
import time
from collections.abc import Callable
from typing import Any

EVENTS: list[tuple[str, float, float, float]] = []  # kind, start, end, process CPU seconds at the end
_depth: dict[str, int] = {}


def _timed(kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Record (kind, start, end) for the outermost call of `kind` only (nested calls are part of it)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer = _depth.get(kind, 0) == 0
        _depth[kind] = _depth.get(kind, 0) + 1
        start = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            _depth[kind] -= 1
            if outer:
                EVENTS.append((kind, start, time.time(), time.process_time()))

    return wrapper


def _wrap_classmethod(cls: type, name: str, kind: str) -> None:
    original = cls.__dict__[name].__func__
    setattr(cls, name, classmethod(_timed(kind, original)))


def _pipeline_utils(module: Any) -> None:
    _wrap_classmethod(module.DiffusionPipeline, "from_pretrained", "load")
    module.DiffusionPipeline.to = _timed("to", module.DiffusionPipeline.to)


def _auto_pipeline(module: Any) -> None:
    for name in ("AutoPipelineForText2Image", "AutoPipelineForImage2Image", "AutoPipelineForInpainting"):
        _wrap_classmethod(getattr(module, name), "from_pretrained", "load")


def _call(class_name: str) -> Callable[[Any], None]:
    def patch(module: Any) -> None:
        cls = getattr(module, class_name)
        cls.__call__ = _timed("call", cls.__call__)

    return patch


def _autoencoder(module: Any) -> None:
    module.AutoencoderKL.decode = _timed("decode", module.AutoencoderKL.decode)


def _image_processor(module: Any) -> None:
    module.VaeImageProcessor.postprocess = _timed("postprocess", module.VaeImageProcessor.postprocess)


def _pil(module: Any) -> None:
    module.Image.save = _timed("save", module.Image.save)


def _outputs(module: Any) -> None:
    module.write_png = _timed("write", module.write_png)


PATCHES: dict[str, Callable[[Any], None]] = {
    "diffusers.pipelines.pipeline_utils": _pipeline_utils,
    "diffusers.pipelines.auto_pipeline": _auto_pipeline,
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion": _call("StableDiffusionPipeline"),
    "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl": _call(
        "StableDiffusionXLPipeline"
    ),
    "diffusers.pipelines.flux.pipeline_flux": _call("FluxPipeline"),
    "diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3": _call("StableDiffusion3Pipeline"),
    "diffusers.models.autoencoders.autoencoder_kl": _autoencoder,
    "diffusers.image_processor": _image_processor,
    "PIL.Image": _pil,
    "sdcli.images.outputs": _outputs,
}


class _Patcher(importlib.abc.MetaPathFinder):
    """Patches a module right after it executes, whoever imports it."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader, patch = spec.loader, PATCHES[name]
        exec_module = loader.exec_module

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            patch(module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def _dump(path: str, started: float) -> None:
    events = [{"kind": k, "start": s, "end": e, "cpu": c} for k, s, e, c in EVENTS]
    with open(path, "w") as handle:
        json.dump({"probe_start": started, "exit": time.time(), "events": events}, handle)


def main() -> None:
    started = time.time()
    out, target, *rest = sys.argv[1:]
    atexit.register(_dump, out, started)
    sys.meta_path.insert(0, _Patcher())
    # sys.path[0] as `python -m` (the working folder) and `python script.py` (the script's folder) set it.
    if target == "-m":
        module, *args = rest
        sys.argv, sys.path[0] = [module, *args], os.getcwd()
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv, sys.path[0] = [target, *rest], os.path.dirname(os.path.abspath(target))
        runpy.run_path(target, run_name="__main__")


if __name__ == "__main__":
    main()
