"""ControlNet weights: load the `--controlnet` models and turn a loaded pipeline into its ControlNet pipeline
(`from_pipe`, so the base model's components are shared, not loaded again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.core.control_specs import ControlNetSpec
from sdcli.errors import ModelUnavailable, UsageError, first_line

# base pipeline -> its ControlNet pipeline; pipelines.TASK_PIPELINES carries them on to img2img / inpaint.
CONTROLNET_PIPELINES = {
    "StableDiffusionPipeline": "StableDiffusionControlNetPipeline",
    "StableDiffusionImg2ImgPipeline": "StableDiffusionControlNetImg2ImgPipeline",
    "StableDiffusionInpaintPipeline": "StableDiffusionControlNetInpaintPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLControlNetPipeline",
    "StableDiffusionXLImg2ImgPipeline": "StableDiffusionXLControlNetImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline": "StableDiffusionXLControlNetInpaintPipeline",
}


def _folder_or_file(spec: ControlNetSpec, revision: str | None = None) -> Path:
    """A local folder or file, or a cached Hub snapshot (downloaded when not cached and not offline)."""
    from sdcli.model.sources import HUB_ID

    path = Path(spec.source).expanduser()
    if path.exists():
        return path
    if not HUB_ID.match(spec.source):
        raise UsageError(f"--controlnet {spec.source}: no such file or folder")
    from sdcli.hub import fetch
    from sdcli.hub.cache import resolve_cached

    cached = resolve_cached(spec.source, revision)
    if cached is not None:
        return cached
    folder, _commit = fetch.ensure_local(spec.source, revision=revision, variant=None)
    return Path(folder)


def weights_file(path: Path) -> Path:
    """The one weights file a ControlNet's hash is taken of."""
    if path.is_file():
        return path
    found = sorted(path.glob("diffusion_pytorch_model*.safetensors")) or sorted(path.glob("*.safetensors"))
    if not found:
        raise UsageError(f"--controlnet {path}: the folder holds no .safetensors weights")
    return found[0]


def display_name(spec: ControlNetSpec, path: Path) -> str:
    """What metadata names it: the Hub id, or the file name / folder name (never where it was)."""
    if not Path(spec.source).expanduser().exists():
        return spec.source
    return path.stem if path.is_file() else path.resolve().name


def load(specs: tuple[ControlNetSpec, ...], dtype: Any, device: Any) -> tuple[Any, list[dict[str, Any]]]:
    """One ControlNetModel (or a MultiControlNetModel of several) on `device`, and each one's record."""
    from diffusers import ControlNetModel
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    from sdcli.model import hashes

    models, records = [], []
    for spec in specs:
        path = _folder_or_file(spec)
        try:
            if path.is_file():
                # A config.json beside the file (a diffusers folder's weights) is its config; without one,
                # diffusers infers the architecture and takes that config from the Hub (cache).
                beside = path.parent / "config.json"
                config = {"config": str(path.parent)} if beside.is_file() else {}
                model = ControlNetModel.from_single_file(str(path), torch_dtype=dtype, **config)
            else:
                model = ControlNetModel.from_pretrained(path, dtype=dtype, use_safetensors=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelUnavailable(
                f"cannot load ControlNet {spec.source}: {first_line(exc)}",
                hint="a single file needs a config: a config.json beside it, or its Hub repo's, cached",
            ) from exc
        models.append(model.to(device))
        records.append(
            {
                "name": display_name(spec, path),
                "hash": hashes.model_hash(weights_file(path)),
                "scale": spec.scale,
                "start": spec.start,
                "end": spec.end,
            }
        )
    return (models[0] if len(models) == 1 else MultiControlNetModel(models)), records


def attach(pipe: Any, controlnet: Any, model_name: str) -> Any:
    """The same pipeline's components as its ControlNet pipeline."""
    import diffusers

    name = type(pipe).__name__
    if name not in CONTROLNET_PIPELINES:
        raise UsageError(
            f"--controlnet: {model_name} ({name}) has no ControlNet pipeline in sdcli",
            hint="ControlNet works with SD 1.x/2.x and SDXL models",
        )
    try:
        converted = getattr(diffusers, CONTROLNET_PIPELINES[name]).from_pipe(pipe, controlnet=controlnet)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise UsageError(f"--controlnet does not fit {model_name}: {first_line(exc)}") from exc
    converted.set_progress_bar_config(disable=True)
    return converted
