"""IP-Adapters: find each `--ip-adapter` weights file and its CLIP image encoder (locally or through the Hub
cache), and load them into a pipeline with diffusers' own `load_ip_adapter`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sdcli.core.ip_adapter_specs import (
    ENCODER_FILES,
    ENCODER_FOLDER,
    ENCODER_HINT,
    IPAdapterSpec,
    encoder_candidates,
    is_encoder,
    local_encoder,
)
from sdcli.errors import ModelUnavailable, UsageError, first_line, is_allocation_failure

VIT_BIGG_WIDTH = 1664  # hidden size of OpenCLIP ViT-bigG, h94's sdxl_models/image_encoder
# The pipelines whose UNet takes IP-Adapter attention processors and whose call takes ip_adapter_image.
IP_ADAPTER_PIPELINES = frozenset(
    f"StableDiffusion{xl}{cn}{task}Pipeline"
    for xl in ("", "XL")
    for cn in ("", "ControlNet")
    for task in ("", "Img2Img", "Inpaint")
)


@dataclass(frozen=True)
class Found:
    weights: Path
    encoder: Path
    hub: bool = False  # the weights came from a Hub repo (its cache)


def _hub_folder(repo: str, folder: str) -> Path:
    """An encoder folder of a Hub repo: from the cache, else downloaded (those files only) unless offline."""
    from sdcli.hub import fetch
    from sdcli.hub.cache import resolve_cached
    from sdcli.hub.settings import is_offline

    snapshot = resolve_cached(repo)
    if snapshot is not None and is_encoder(snapshot / folder):
        return snapshot / folder
    files = [f"{folder}/{name}".removeprefix("./") for name in ENCODER_FILES]
    if is_offline():
        raise ModelUnavailable(
            f"the image encoder {repo}/{folder} is not in the local cache",
            hint=f"run `sdcli download {repo} {' '.join(files)}` where there is network (offline mode is on)",
        )
    return fetch.download_files(repo, files).path / folder


def _split_hub(text: str) -> tuple[str, str]:
    parts = text.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:]) or "."


def _given_encoder(text: str) -> Path:
    path = Path(text).expanduser()
    if path.is_dir():
        if not is_encoder(path):
            raise UsageError(f"--ip-image-encoder {text}: no config.json and model.safetensors in it")
        return path
    return _hub_folder(*_split_hub(text))


def find(spec: IPAdapterSpec, encoder: str | None) -> Found:
    """The weights file and its image encoder folder, both local paths."""
    from sdcli.model import checkpoints

    weights = checkpoints.resolve_file(spec.source, "--ip-adapter", None)
    if encoder is not None:
        return Found(weights.path, _given_encoder(encoder), weights.repo_id is not None)
    if weights.repo_id is None:
        return Found(weights.path, local_encoder(weights.path))
    repo, filename = _split_hub(spec.source)
    failure: ModelUnavailable | None = None
    for candidate in encoder_candidates(PurePosixPath(filename)):
        try:
            return Found(weights.path, _hub_folder(repo, candidate), hub=True)
        except ModelUnavailable as exc:  # not in this folder of the repo: try the next
            failure = exc
    assert failure is not None
    raise ModelUnavailable(
        f"--ip-adapter {spec.source}: no {ENCODER_FOLDER} folder beside it in {repo}: {failure.message}",
        hint=failure.hint or ENCODER_HINT,
    )


def _check_encoder_fits(weights: Path, encoder: Any, spec: IPAdapterSpec, folder: Path) -> None:
    """A ViT-H adapter with a ViT-bigG encoder loads but fails inside the first step; the projection's input
    width says which encoder an adapter was trained with (read from the file's header, no tensor loaded)."""
    if weights.suffix.lower() != ".safetensors":
        return
    from safetensors import safe_open

    config = encoder.config
    with safe_open(str(weights), framework="pt", device="cpu") as handle:
        keys = set(handle.keys())
        for key, width in (
            ("image_proj.proj.weight", config.projection_dim),
            ("image_proj.proj_in.weight", config.hidden_size),
        ):
            shape = handle.get_slice(key).get_shape() if key in keys else None
            if shape is not None and len(shape) == 2 and shape[1] != width:
                raise UsageError(
                    f"--ip-adapter {spec.source} expects image embeddings of width {shape[1]}, but its image "
                    f"encoder {folder} gives {width}",
                    hint=f"{ENCODER_HINT}; h94's SDXL vit-h adapters use h94/IP-Adapter/models/image_encoder",
                )


def load(
    pipe: Any, specs: tuple[IPAdapterSpec, ...], encoder: str | None, model_name: str, dtype: Any, device: Any
) -> list[dict[str, Any]]:
    """Loads every adapter into `pipe` (one image encoder for all: the first adapter's) and sets the scales;
    returns each one's metadata record (name, hash, scale)."""
    from transformers import CLIPVisionModelWithProjection

    from sdcli.model import hashes

    name = type(pipe).__name__
    if name not in IP_ADAPTER_PIPELINES:
        raise UsageError(
            f"--ip-adapter: {model_name} ({name}) takes no IP-Adapter in sdcli",
            hint="IP-Adapters work with SD 1.x/2.x and SDXL models",
        )
    found = [find(spec, encoder) for spec in specs]
    try:
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(found[0].encoder, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot load the image encoder {found[0].encoder}: {first_line(exc)}"
        ) from exc
    for spec, where in zip(specs, found, strict=True):
        _check_encoder_fits(where.weights, image_encoder, spec, found[0].encoder)
    # Registered first, so load_ip_adapter uses this encoder (which --ip-image-encoder may name, or another
    # repo hold) rather than looking for one itself.
    pipe.register_modules(image_encoder=image_encoder.to(device))
    try:
        pipe.load_ip_adapter(
            [str(where.weights.parent) for where in found],
            subfolder=[""] * len(found),
            weight_name=[where.weights.name for where in found],
            image_encoder_folder=None,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, KeyError) as exc:
        if is_allocation_failure(exc):
            raise
        names = ", ".join(spec.source for spec in specs)
        raise UsageError(
            f"--ip-adapter {names} does not fit {model_name}: {first_line(exc)}",
            hint="an SD 1.5 adapter needs an SD 1.x model, an SDXL one (sdxl_models/) an SDXL model",
        ) from exc
    scales = [spec.scale for spec in specs]
    pipe.set_ip_adapter_scale(scales[0] if len(scales) == 1 else scales)
    module = (
        "ip-adapter_clip_g" if image_encoder.config.hidden_size == VIT_BIGG_WIDTH else "ip-adapter_clip_h"
    )
    hub_encoder = encoder is not None and not Path(encoder).expanduser().is_dir()
    return [
        {
            "name": where.weights.stem,
            "hash": hashes.model_hash(where.weights),
            "scale": spec.scale,
            "module": module,  # A1111's preprocessor name: which CLIP encoder made the embeddings
            # A Hub path is where anyone finds it again (--from reuses it); a local path never is recorded.
            **({"source": spec.source} if where.hub else {}),
            **({"image_encoder": encoder} if where.hub and hub_encoder else {}),
        }
        for spec, where in zip(specs, found, strict=True)
    ]
