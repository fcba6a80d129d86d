"""`--control-preprocess depth`: a transformers depth-estimation model (Depth Anything, DPT) turns each
control image into its depth map, made as transformers' depth-estimation pipeline makes it (what diffusers'
ControlNet docs use): the predicted depth at the image's size, min-max scaled to 0-255, grey as RGB."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdcli.core.control_specs import DEFAULT_DEPTH_MODEL
from sdcli.errors import ModelUnavailable, UsageError, first_line

NEEDED = ("config.json", "preprocessor_config.json")
FOLDER_HINT = (
    "give a transformers depth-estimation folder (config.json, preprocessor_config.json, *.safetensors) "
    "or a Hub id such as " + DEFAULT_DEPTH_MODEL
)


@dataclass
class DepthEstimator:
    processor: Any
    model: Any
    name: str  # what metadata names it: the Hub id, or the folder's name
    module: str  # A1111's ControlNet extension's preprocessor name for this kind of model
    # Depth maps already made, by control image hash: one estimate per control image, however many runs.
    maps: dict[str, Any] = field(default_factory=dict)

    def depth_map(self, image: Any, key: str | None = None) -> Any:
        if key is not None and key in self.maps:
            return self.maps[key]
        import numpy as np
        import torch
        from PIL import Image

        inputs = self.processor(images=image, return_tensors="pt").to(self.model.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        # For ZoeDepth this size is its `source_sizes`, for the rest the target: as transformers' pipeline.
        found = self.processor.post_process_depth_estimation(outputs, [image.size[::-1]])
        depth = found[0]["predicted_depth"].float().cpu().numpy()
        low, high = float(depth.min()), float(depth.max())
        # A flat estimate has no depth to show; the pipeline's formula would divide by zero.
        scaled = (depth - low) / (high - low) if high > low else np.zeros_like(depth)
        mapped = Image.fromarray((scaled * 255).astype("uint8")).convert("RGB")
        if key is not None:
            self.maps[key] = mapped
        return mapped


def _config(folder: Path, source: str) -> dict[str, Any]:
    missing = [name for name in NEEDED if not (folder / name).is_file()]
    if missing:
        raise UsageError(
            f"--depth-model {source}: the folder has no {' or '.join(missing)}", hint=FOLDER_HINT
        )
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--depth-model {source}: unreadable config.json: {first_line(exc)}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise UsageError(f"--depth-model {source}: config.json names no model_type", hint=FOLDER_HINT)
    if not any(folder.glob("*.safetensors")):
        raise UsageError(
            f"--depth-model {source}: the folder holds no .safetensors weights", hint=FOLDER_HINT
        )
    return config


def check(source: str | None) -> None:
    """Before the base model loads: a local folder (or an already cached Hub id) holds a depth model's files;
    a Hub id still to download is checked once it is here."""
    from sdcli.hub.cache import resolve_cached

    name = source or DEFAULT_DEPTH_MODEL
    path = Path(name).expanduser()
    found = path if path.exists() else resolve_cached(name)
    if found is not None:
        _config(found, name)


def locate(source: str | None) -> Path:
    """The model's folder: local, cached, or downloaded (ModelUnavailable offline when not cached, with
    the `sdcli download` line)."""
    from sdcli.hub import fetch
    from sdcli.hub.cache import resolve_cached
    from sdcli.model.sources import HUB_ID

    name = source or DEFAULT_DEPTH_MODEL
    path = Path(name).expanduser()
    if path.exists():
        return path
    if not HUB_ID.match(name):
        raise UsageError(f"--depth-model {name}: no such folder", hint=FOLDER_HINT)
    cached = resolve_cached(name)
    if cached is not None:
        return cached
    folder, _commit = fetch.ensure_local(name, revision=None, variant=None)
    return Path(folder)


def module_name(config: dict[str, Any], name: str) -> str:
    """The ControlNet extension's `Module:` for the model: Depth Anything V1 and V2 share one architecture
    (model_type depth_anything), so the name tells them apart; DPT is MiDaS's (`depth_midas`)."""
    kind = config.get("model_type")
    if kind == "depth_anything":
        return "depth_anything_v2" if "v2" in name.lower() else "depth_anything"
    return {"dpt": "depth_midas", "zoedepth": "depth_zoe"}.get(str(kind), "depth")


def load(source: str | None, folder: Path, device: Any) -> DepthEstimator:
    """The processor and model, in float32 on `device` (a small model; its maps need no half precision)."""
    name = source or DEFAULT_DEPTH_MODEL
    config = _config(folder, name)
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    try:
        processor = AutoImageProcessor.from_pretrained(folder)
        model = AutoModelForDepthEstimation.from_pretrained(folder, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        error = UsageError if Path(name).expanduser().exists() else ModelUnavailable
        raise error(f"--depth-model {name}: cannot load it: {first_line(exc)}", hint=FOLDER_HINT) from None
    local = Path(name).expanduser()
    shown = local.resolve().name if local.exists() else name
    return DepthEstimator(processor, model.to(device).eval(), shown, module_name(config, shown))
