"""Single-file checkpoints (A1111/Civitai `.safetensors`): find the file, tell its family, load it offline.

A checkpoint holds weights only. The rest of a pipeline (component configs, tokenizer files, the scheduler)
comes from a diffusers folder of the same family: `--config`, else the family's reference repo from the Hub
cache. Nothing here goes to the network for that: when no configuration is cached, the user is told which
`sdcli download ... --config-only` to run. Pickled weights (.ckpt/.pt/.bin/.pth) can run code when loaded,
so they are refused unless `--allow-pickle`, and then read with `torch.load(weights_only=True)` only.

Only the standard library at import time: `--help` and usage errors import this module.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcli.core.specs import is_checkpoint_name, is_pickle, refuse_pickle
from sdcli.errors import ModelUnavailable, UsageError, first_line
from sdcli.hub.selection import model_index_in

UNET = "model.diffusion_model."


@dataclass(frozen=True)
class Family:
    label: str  # for messages: "SD 1.x"
    reference: str  # the Hub repo whose configs and tokenizers describe this family
    xl: bool = False
    inpaint: bool = False
    refiner: bool = False  # an img2img-only model: it runs as --refiner, after a base model's steps


REFINER = "sdxl-refiner"
FAMILIES = {
    "sd1": Family("SD 1.x", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
    "sd2": Family("SD 2.x", "stabilityai/stable-diffusion-2-1"),
    "sdxl": Family("SDXL", "stabilityai/stable-diffusion-xl-base-1.0", xl=True),
    "sd1-inpaint": Family(
        "SD 1.x inpainting", "stable-diffusion-v1-5/stable-diffusion-inpainting", inpaint=True
    ),
    "sd2-inpaint": Family("SD 2.x inpainting", "stabilityai/stable-diffusion-2-inpainting", inpaint=True),
    "sdxl-inpaint": Family(
        "SDXL inpainting", "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", xl=True, inpaint=True
    ),
    REFINER: Family("SDXL refiner", "stabilityai/stable-diffusion-xl-refiner-1.0", xl=True, refiner=True),
}
# Which text encoder a checkpoint carries tells the family. diffusers' `infer_diffusers_model_type` looks for
# keys of the full-size models (e.g. the 10th OpenCLIP block) and calls anything it does not know SD 1.x;
# prefixes work for any size and let a file that is no checkpoint at all be refused with a reason.
_TEXT_ENCODER_PREFIXES = (
    ("conditioner.embedders.1.model.transformer.", "sdxl"),
    ("cond_stage_model.model.transformer.", "sd2"),
    ("cond_stage_model.transformer.", "sd1"),
)
_LORA_MARKERS = ("lora_unet_", "lora_te", ".lora_down.", ".lora_A.", ".lora.down.", "lora_up")


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    repo_id: str | None = None  # set when the file came from the Hub cache
    commit: str | None = None


# -- finding the file ----------------------------------------------------------------------------------------


def resolve_file(spec: str, what: str, revision: str | None = None) -> WeightsFile:
    """A local file or folder (its one weights file), or a Hub `owner/repo/path/file.safetensors` or
    `owner/repo`, taken from the Hub cache first and downloaded only when not cached and not offline."""
    from sdcli.model.sources import HUB_ID

    path = Path(spec).expanduser()
    if path.is_file():
        return WeightsFile(path)
    if path.is_dir():  # a local folder wins over a Hub id, as for --model
        found = _pick(path, spec, None)
        if found is None:
            raise UsageError(f"{what} {spec}: the folder holds no .safetensors file")
        return WeightsFile(found)
    parts = spec.split("/")
    local = spec.startswith((".", "/", "~")) or "\\" in spec or (len(parts) <= 2 and is_checkpoint_name(spec))
    if local or len(parts) < 2 or not HUB_ID.match("/".join(parts[:2])):
        raise UsageError(f"{what} {spec}: no such file")
    return _hub_file("/".join(parts[:2]), "/".join(parts[2:]) or None, revision, what)


def _hub_file(repo: str, filename: str | None, revision: str | None, what: str) -> WeightsFile:
    from sdcli.hub import fetch
    from sdcli.hub.cache import resolve_cached
    from sdcli.hub.settings import is_offline

    snapshot = resolve_cached(repo, revision)
    found = _pick(snapshot, repo, filename) if snapshot else None
    if found is not None and snapshot is not None:
        return WeightsFile(found, repo, snapshot.name)
    if is_offline():
        command = f"sdcli download {repo}" + (f" {filename}" if filename else "")
        raise ModelUnavailable(
            f"{what} {repo}{'/' + filename if filename else ''} is not in the local cache",
            hint=f"run `{command}` where there is network (offline mode is on)",
        )
    if filename:
        result = fetch.download_files(repo, [filename], revision=revision)
    else:
        result = fetch.download(fetch.plan_download(repo, revision=revision))
    found = _pick(result.path, repo, filename)
    if found is None:
        raise ModelUnavailable(f"{what} {repo} holds no .safetensors weights file")
    return WeightsFile(found, repo, result.commit)


def _pick(folder: Path, repo: str, filename: str | None) -> Path | None:
    if filename:
        return folder / filename if (folder / filename).is_file() else None
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(".safetensors"))
    if "pytorch_lora_weights.safetensors" in files:  # what diffusers' training scripts write
        return folder / "pytorch_lora_weights.safetensors"
    if len(files) > 1:
        raise UsageError(
            f"{repo} holds several weights files: {', '.join(files)}", hint=f"name one: {repo}/{files[0]}"
        )
    return folder / files[0] if files else None


# -- reading it ----------------------------------------------------------------------------------------------


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the JSON header alone: no tensor is read."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise UsageError(f"{path.name} is not a readable .safetensors file ({exc})") from exc
    try:  # the header parsed as JSON, but may not be an object of {"shape": [ints], ...} entries
        return {
            str(key): tuple(int(n) for n in value["shape"])
            for key, value in header.items()
            if key != "__metadata__"
        }
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise UsageError(
            f"{path.name} is not a readable .safetensors file (its header is not a table of tensors)"
        ) from exc


def load_pickle(path: Path) -> dict[str, Any]:
    """A pickled state dict, tensors only: `weights_only=True` refuses any other object in the file."""
    import pickle
    import warnings
    import zipfile

    import torch

    try:
        # torch warns about the pickle protocol of a file it is about to refuse: the error says it all.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise UsageError(
            f"{path.name} holds Python objects other than tensors; sdcli does not load those",
            hint="only plain state dicts load with --allow-pickle; convert the file to .safetensors",
        ) from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise UsageError(f"{path.name} is not a readable PyTorch checkpoint ({first_line(exc)})") from exc
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # Lightning-era checkpoints nest the weights
    if not isinstance(state, dict):
        raise UsageError(f"{path.name} does not hold a state dict")
    return state


def load_weights(path: Path) -> dict[str, Any]:
    """A whole weights file as a state dict; callers have applied `refuse_pickle` first."""
    if is_pickle(path.name):
        return load_pickle(path)
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as exc:  # safetensors raises its own SafetensorError for a damaged file
        raise UsageError(f"{path.name} is not a readable .safetensors file ({first_line(exc)})") from exc


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if is_pickle(path.name):
        return {k: tuple(v.shape) for k, v in load_pickle(path).items() if hasattr(v, "shape")}
    return safetensors_shapes(path)


def detect_family(shapes: dict[str, tuple[int, ...]], name: str) -> Family:
    """The family of an original-layout (LDM) checkpoint, from its key names and the UNet's input width."""
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight")
    if conv_in is None:
        lora = any(marker in key for key in shapes for marker in _LORA_MARKERS)
        raise UsageError(
            f"{name} is not a Stable Diffusion checkpoint (it has no {UNET}* UNet weights)",
            hint="pass a LoRA with --lora" if lora else "--model takes a full SD 1.x, 2.x or SDXL checkpoint",
        )
    if any(key.startswith("conditioner.embedders.0.model.transformer.") for key in shapes):
        return FAMILIES[REFINER]  # its only text encoder is OpenCLIP, the embedder SDXL's base has second
    family = next(
        (fam for prefix, fam in _TEXT_ENCODER_PREFIXES if any(key.startswith(prefix) for key in shapes)), None
    )
    if family is None:
        raise UsageError(f"{name} holds a UNet but no text encoder, so it cannot run on its own")
    inpaint = len(conv_in) > 1 and conv_in[1] == 9
    return FAMILIES[f"{family}-inpaint" if inpaint else family]


def check_role(family: Family, name: str, what: str) -> None:
    """A refiner cannot make an image from text alone; as --refiner only an SDXL model can follow SDXL's."""
    if what == "--refiner":
        if not family.xl or family.inpaint:
            raise UsageError(
                f"--refiner {name} is an {family.label} checkpoint; a refiner must be an SDXL refiner or "
                "SDXL model",
                hint="e.g. stabilityai/stable-diffusion-xl-refiner-1.0",
            )
    elif family.refiner:
        raise UsageError(
            f"{name} is an SDXL refiner checkpoint: it only finishes images an SDXL model began",
            hint=f"pass it as --refiner {name} with an SDXL --model",
        )


# -- configuration and loading -------------------------------------------------------------------------------


def find_config(family: Family, config: str | None, name: str) -> tuple[Path, str]:
    """(diffusers folder with the family's configs and tokenizers, the name the record gives it)."""
    from sdcli.hub.cache import resolve_cached
    from sdcli.model.sources import HUB_ID, display_name

    if config is None:
        snapshot = resolve_cached(family.reference)
        if snapshot is not None and model_index_in(snapshot) is not None:
            return snapshot, family.reference
        raise ModelUnavailable(
            f"{name} is an {family.label} checkpoint; loading it needs the configuration files of "
            f"{family.reference}, which are not in the local cache",
            hint=f"run `sdcli download {family.reference} --config-only` (a few MB, no weights), "
            "or pass --config with a diffusers folder of the same family",
        )
    path = Path(config).expanduser()
    if path.is_dir():
        if model_index_in(path) is None:
            raise ModelUnavailable(
                f"--config {config} has no model_index.json: not a diffusers pipeline folder"
            )
        return path, display_name(config)
    if config.startswith((".", "/", "~")) or not HUB_ID.match(config) or "/" not in config:
        raise UsageError(f"--config {config}: no such folder, and not a Hub repo id")
    snapshot = resolve_cached(config)
    if snapshot is None or model_index_in(snapshot) is None:
        raise ModelUnavailable(
            f"--config {config} is not in the local cache",
            hint=f"run `sdcli download {config} --config-only` (a few MB, no weights)",
        )
    return snapshot, config


def check_fits(family: Family, folder: Path, name: str, config_name: str) -> None:
    """A config of another family fails deep inside diffusers with a shape error; say it plainly instead."""
    index = model_index_in(folder) or {}
    config_xl = "text_encoder_2" in index
    config_refiner = config_xl and (index.get("text_encoder") or [None])[0] is None
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        config_inpaint = unet.get("in_channels") == 9
    except (OSError, ValueError, AttributeError):
        config_inpaint = family.inpaint  # nothing to compare with: let diffusers decide
    if config_xl != family.xl or config_inpaint != family.inpaint or config_refiner != family.refiner:
        raise UsageError(
            f"{name} is an {family.label} checkpoint but --config {config_name} describes a "
            f"{index.get('_class_name', 'different')} model",
            hint=f"use a config of the same family, e.g. {family.reference}",
        )


def locate(
    model: str,
    *,
    config: str | None,
    allow_pickle: bool,
    revision: str | None = None,
    what: str = "--model",
) -> Any:
    """The ModelSource of a single-file checkpoint: the file, its family's config folder and its hash.
    `what` is "--refiner" for the refiner, the one place a refiner checkpoint runs."""
    from sdcli.model import hashes
    from sdcli.model.sources import ModelSource

    refuse_pickle(model, allow_pickle, what)
    weights = resolve_file(model, what, revision)
    name = weights.path.stem
    family = detect_family(tensor_shapes(weights.path), weights.path.name)
    check_role(family, weights.path.name, what)
    folder, config_name = find_config(family, config, weights.path.name)
    check_fits(family, folder, weights.path.name, config_name)
    return ModelSource(
        name=name,
        folder=folder,
        repo_id=weights.repo_id,
        revision=revision if weights.repo_id else None,
        commit=weights.commit,
        model_hash=hashes.model_hash(weights.path),
        checkpoint=weights.path,
        config=config_name,
    )


def load(cls: Any, source: Any, dtype: Any, **kwargs: Any) -> Any:
    """`from_single_file` with a local config folder and local_files_only: it never reaches the network."""
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    try:
        return cls.from_single_file(
            str(source.checkpoint), config=str(source.folder), local_files_only=True, dtype=dtype, **kwargs
        )
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as exc:
        if "out of memory" in str(exc).lower():
            raise
        raise ModelUnavailable(
            f"cannot load {source.checkpoint.name} with the configuration of {source.config}: "
            f"{first_line(exc)}",
            hint="the configuration must come from a model of the same family and size (--config)",
        ) from exc
