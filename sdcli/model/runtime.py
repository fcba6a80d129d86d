"""Device, dtype and random-number policy. Imports torch, so only code that runs a model calls it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sdcli.errors import DeviceUnavailable

DTYPE_NAMES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


@contextmanager
def collections_paused() -> Iterator[None]:
    """No garbage collection while torch, diffusers and transformers are imported and a model is loaded.

    That work creates ~500k objects that all live on, so every collection it triggers scans a growing heap
    and frees nothing: they cost ~1.2 s of a ~10 s import on a 2-core CPU. Freed objects without cycles
    still go at once (reference counting); the next collection after this finds any cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _visible_devices() -> str:
    import torch

    seen = ["cpu"]
    if torch.cuda.is_available():
        seen += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if mps_available():
        seen.append("mps")
    cuda = torch.version.cuda or "none"
    return f"torch {torch.__version__} (CUDA build: {cuda}) sees: {', '.join(seen)}"


def mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(spec: str) -> Any:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is not there is exit 5."""
    import torch

    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"--device {spec}: CUDA is not available; {_visible_devices()}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"--device {spec}: no such GPU; {_visible_devices()}")
    if device.type == "mps" and not mps_available():
        raise DeviceUnavailable(f"--device {spec}: MPS is not available; {_visible_devices()}")
    return device


def resolve_dtype(spec: str, device: Any) -> tuple[Any, list[str]]:
    """`auto`: fp16 on CUDA and MPS, fp32 on CPU (half precision on CPU is slow and lossy).
    bf16 on a GPU without bf16 falls back to fp16, with a note saying so."""
    import torch

    name = spec if spec != "auto" else ("fp32" if device.type == "cpu" else "fp16")
    notes = []
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        notes.append(f"{torch.cuda.get_device_name(device)} has no bf16 support; using fp16")
        name = "fp16"
    return getattr(torch, DTYPE_NAMES[name]), notes


def dtype_name(dtype: Any) -> str:
    text = str(dtype).removeprefix("torch.")
    return next((short for short, long in DTYPE_NAMES.items() if long == text), text)


def generators(seeds: list[int], device: Any = "cpu") -> list[Any]:
    """One generator per image, on the CPU by default, so a seed means the same noise on every device."""
    import torch

    return [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
