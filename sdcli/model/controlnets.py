"""ControlNet weights: load the `--controlnet` models and turn a loaded pipeline into its ControlNet pipeline
(`from_pipe`, so the base model's components are shared, not loaded again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.core.control_specs import ControlNetSpec
from sdcli.errors import ModelUnavailable, UsageError, first_line

# ControlNet class (config.json's `_class_name`) -> its family's base pipelines -> their ControlNet
# pipelines; pipelines.TASK_PIPELINES carries a ControlNet pipeline on to img2img / inpaint.
CONTROLNET_PIPELINES = {
    "ControlNetModel": {
        "StableDiffusionPipeline": "StableDiffusionControlNetPipeline",
        "StableDiffusionImg2ImgPipeline": "StableDiffusionControlNetImg2ImgPipeline",
        "StableDiffusionInpaintPipeline": "StableDiffusionControlNetInpaintPipeline",
        "StableDiffusionXLPipeline": "StableDiffusionXLControlNetPipeline",
        "StableDiffusionXLImg2ImgPipeline": "StableDiffusionXLControlNetImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline": "StableDiffusionXLControlNetInpaintPipeline",
    },
    "ControlNetUnionModel": {
        "StableDiffusionXLPipeline": "StableDiffusionXLControlNetUnionPipeline",
        "StableDiffusionXLImg2ImgPipeline": "StableDiffusionXLControlNetUnionImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline": "StableDiffusionXLControlNetUnionInpaintPipeline",
    },
    "FluxControlNetModel": {
        "FluxPipeline": "FluxControlNetPipeline",
        "FluxImg2ImgPipeline": "FluxControlNetImg2ImgPipeline",
        "FluxInpaintPipeline": "FluxControlNetInpaintPipeline",
    },
    # diffusers has no SD3 ControlNet img2img; its SD3ControlNetInpaintingPipeline wants an inpainting
    # ControlNet (the mask goes to the ControlNet), which is another kind of model.
    "SD3ControlNetModel": {"StableDiffusion3Pipeline": "StableDiffusion3ControlNetPipeline"},
}
# Several ControlNets of one class run as the class's multi-model wrapper.
MULTI_MODELS = {
    "ControlNetModel": "MultiControlNetModel",
    "ControlNetUnionModel": "MultiControlNetUnionModel",
    "FluxControlNetModel": "FluxMultiControlNetModel",
    "SD3ControlNetModel": "SD3MultiControlNetModel",
}
FITS = {
    "ControlNetModel": "SD 1.x/2.x and SDXL models",
    "ControlNetUnionModel": "SDXL models",
    "FluxControlNetModel": "FLUX.1 models",
    "SD3ControlNetModel": "SD3 models (text-to-image)",
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


def _config(path: Path) -> dict[str, Any]:
    """The ControlNet's config.json (a folder's, or the one beside a single file); {} when there is none."""
    import json

    config = path / "config.json" if path.is_dir() else path.parent / "config.json"
    try:
        found = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"--controlnet {path}: unreadable config.json: {first_line(exc)}") from exc
    if not isinstance(found, dict):
        raise UsageError(f"--controlnet {path}: config.json is not a JSON object")
    return found


def class_name(path: Path) -> str:
    """The ControlNet's class from its config; a file without one is an SD/SDXL ControlNet, the only kind
    diffusers infers from a bare file."""
    found = _config(path).get("_class_name", "ControlNetModel")
    if found not in CONTROLNET_PIPELINES:
        raise UsageError(
            f"--controlnet {path}: a {found}, which sdcli does not run as a ControlNet",
            hint="sdcli runs " + ", ".join(CONTROLNET_PIPELINES),
        )
    return str(found)


def check_mode(spec: ControlNetSpec, path: Path) -> None:
    """A ControlNet-Union needs its condition named (`MODEL@canny`), and only a union takes one: checked on
    the config, before any weights load."""
    config = _config(path)
    kind = config.get("_class_name", "ControlNetModel")
    if kind == "FluxControlNetModel" and config.get("num_mode"):
        raise UsageError(
            f"--controlnet {spec.source}: FLUX.1 ControlNet-Union models are not supported yet",
            hint="use a FLUX.1 ControlNet for one condition (canny, depth, ...)",
        )
    if kind != "ControlNetUnionModel":
        if spec.mode is not None:
            raise UsageError(
                f"--controlnet {spec.source}@{spec.mode}: only a ControlNet-Union model takes a mode; "
                f"this is a {kind}",
                hint="drop @" + spec.mode,
            )
        return
    if spec.mode is None:
        raise UsageError(
            f"--controlnet {spec.source}: a ControlNet-Union model needs the condition the image is",
            hint=f"e.g. --controlnet {spec.source}@canny:IMAGE (modes: openpose, depth, hed, canny, normal, "
            "segment, tile, repaint)",
        )
    count = config.get("num_control_type", 6)
    if isinstance(count, int) and spec.mode_index is not None and spec.mode_index >= count:
        raise UsageError(
            f"--controlnet {spec.source}@{spec.mode}: this union model has {count} modes (0-{count - 1})",
            hint="tile (6) and repaint (7) need an 8-mode ProMax model (xinsir/controlnet-union-sdxl-1.0's)",
        )


def check_local(specs: tuple[ControlNetSpec, ...]) -> None:
    """Before the base model loads: the modes of the ControlNets already on disk (a folder, a file, a
    cached Hub id; one still to download is checked once it is here)."""
    from sdcli.hub.cache import resolve_cached
    from sdcli.model.sources import HUB_ID

    for spec in specs:
        path = Path(spec.source).expanduser()
        found = path if path.exists() else resolve_cached(spec.source) if HUB_ID.match(spec.source) else None
        if found is not None:
            class_name(found)
            check_mode(spec, found)


def _load_one(spec: ControlNetSpec, path: Path, kind: str, dtype: Any) -> Any:
    import diffusers

    cls = getattr(diffusers, kind)
    if path.is_file():
        if not hasattr(cls, "from_single_file"):
            raise UsageError(
                f"--controlnet {spec.source}: diffusers reads a {kind} from its folder only",
                hint="give the folder that holds config.json and the .safetensors weights",
            )
        # A config.json beside the file (a diffusers folder's weights) is its config; without one,
        # diffusers infers the architecture and takes that config from the Hub (cache).
        beside = path.parent / "config.json"
        config = {"config": str(path.parent)} if beside.is_file() else {}
        return cls.from_single_file(str(path), torch_dtype=dtype, **config)
    return cls.from_pretrained(path, dtype=dtype, use_safetensors=True)


def load(specs: tuple[ControlNetSpec, ...], dtype: Any, device: Any) -> tuple[Any, list[dict[str, Any]]]:
    """One ControlNet (or its class's multi-model wrapper of several) on `device`, and each one's record."""

    from sdcli.model import hashes

    paths = [_folder_or_file(spec) for spec in specs]
    kinds = [class_name(path) for path in paths]
    for spec, path in zip(specs, paths, strict=True):
        check_mode(spec, path)
    if len(set(kinds)) > 1:
        raise UsageError(
            "--controlnet: these ControlNets are of different kinds (" + ", ".join(kinds) + ")",
            hint="several --controlnet units must all be for the same model family",
        )
    models, records = [], []
    for spec, path, kind in zip(specs, paths, kinds, strict=True):
        try:
            model = _load_one(spec, path, kind, dtype)
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
                **({"mode": spec.mode} if spec.mode is not None else {}),
            }
        )
    if len(models) == 1:
        return models[0], records
    from diffusers.models import controlnets as wrappers  # the multi-model classes are not top-level

    return getattr(wrappers, MULTI_MODELS[kinds[0]])(models), records


def kind_of(controlnet: Any) -> str:
    nets = getattr(controlnet, "nets", None)
    return type(nets[0] if nets else controlnet).__name__


def _generation(config: Any) -> str:
    """SDXL's UNets (and so its ControlNets) take the pooled text and the size as `text_time` added
    embeddings; SD 1.x/2.x's take none."""
    return "SDXL" if getattr(config, "addition_embed_type", None) == "text_time" else "SD 1.x/2.x"


def _check_unet_fit(pipe: Any, controlnet: Any, model_name: str) -> None:
    """One ControlNetModel class serves SD 1.x/2.x and SDXL: a ControlNet made for the other one only
    fails inside the first step, on a shape, so its config is compared with the UNet's first."""
    unet = getattr(pipe, "unet", None)
    if unet is None:
        return
    for net in getattr(controlnet, "nets", None) or [controlnet]:
        mine, theirs = net.config, unet.config
        if _generation(mine) != _generation(theirs):
            raise UsageError(
                f"--controlnet: this ControlNet is for {_generation(mine)} models; {model_name} is an "
                f"{_generation(theirs)} model",
                hint="SDXL ControlNets: e.g. diffusers/controlnet-canny-sdxl-1.0; SD 1.5 ones: e.g. "
                f"lllyasviel/control_v11p_sd15_canny. Give one for {_generation(theirs)}",
            )
        if getattr(mine, "cross_attention_dim", None) != getattr(theirs, "cross_attention_dim", None):
            raise UsageError(
                f"--controlnet: this ControlNet's cross_attention_dim is {mine.cross_attention_dim}, "
                f"{model_name}'s UNet's {theirs.cross_attention_dim}: they are for different models",
                hint="SD 1.x ControlNets take 768, SD 2.x 1024, SDXL 2048: give one for this model",
            )


def attach(pipe: Any, controlnet: Any, model_name: str) -> Any:
    """The same pipeline's components as its ControlNet pipeline; a ControlNet of another family than the
    base model is a usage error naming what it fits."""
    import diffusers

    name, kind = type(pipe).__name__, kind_of(controlnet)
    table = CONTROLNET_PIPELINES[kind]
    if name not in table:
        fits = [k for k, pipes in CONTROLNET_PIPELINES.items() if name in pipes]
        raise UsageError(
            f"--controlnet: a {kind} is for {FITS[kind]}; {model_name} is a {name}",
            hint=f"give a {fits[0]} for this model" if fits else f"{name} has no ControlNet pipeline",
        )
    _check_unet_fit(pipe, controlnet, model_name)
    try:
        converted = getattr(diffusers, table[name]).from_pipe(pipe, controlnet=controlnet)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise UsageError(f"--controlnet does not fit {model_name}: {first_line(exc)}") from exc
    converted.set_progress_bar_config(disable=True)
    return converted
