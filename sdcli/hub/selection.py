"""Which files of a Hub repo image generation needs: pure functions over a file list, no network.

A Stable Diffusion repo typically holds each weight several times (safetensors, .bin, flax, ONNX, fp16
copies) plus single-file checkpoints at the top level, so downloading "the repo" can cost 5-10x what loading
it needs. diffusers loads safetensors, one variant at a time, from the folders model_index.json names.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

MODEL_INDEX = "model_index.json"
CONFIG_SUFFIXES = (".json", ".txt", ".yaml", ".yml")
# sentencepiece / tiktoken tokenizers ship binary model files next to their configs
TOKENIZER_FILES = frozenset(
    {"spiece.model", "tokenizer.model", "sentencepiece.bpe.model", "tokenizer.tiktoken"}
)
WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".ckpt",
    ".pt",
    ".pth",
    ".onnx",
    ".onnx_data",
    ".msgpack",
    ".h5",
    ".gguf",
)
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
_VARIANT_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")  # "fp16", "non_ema"; not the "0" of "sd_xl_base_1.0"
_NOT_VARIANTS = frozenset({"safetensors", "index"})


def select_files(
    files: list[str],
    model_index: dict[str, Any] | None,
    *,
    variant: str | None = None,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    everything: bool = False,
    config_only: bool = False,
) -> list[str]:
    """The files to fetch, sorted.

    - pipeline repo (`model_index` given): model_index.json plus, for each component it lists, the configs,
      tokenizer files and safetensors weights of that component's folder, one variant per weight;
    - other repos (`model_index` None): safetensors and configs at the top level only;
    - `everything`: every file; `config_only`: configs and tokenizer files only, no weights;
    - then `include` globs add from the full list and `exclude` globs remove (fnmatch, `*` crosses `/`).
    """
    if everything:
        chosen = set(files)
    elif model_index is None:
        chosen = _pick([f for f in files if "/" not in f], variant)
    else:
        chosen = {MODEL_INDEX} & set(files)
        for component in pipeline_components(model_index):
            chosen |= _pick([f for f in files if f.startswith(component + "/")], variant)
    if config_only:
        chosen = {f for f in chosen if is_config(f)}
    chosen |= {f for f in files if _matches(f, include)}
    chosen -= {f for f in chosen if _matches(f, exclude)}
    return sorted(chosen)


def pipeline_components(model_index: dict[str, Any]) -> list[str]:
    """Folders that hold a component: entries like `"unet": ["diffusers", "UNet2DConditionModel"]`.

    `[null, null]` marks a component the pipeline was saved without (often the safety checker).
    """
    return [
        name
        for name, value in model_index.items()
        if not name.startswith("_")
        and isinstance(value, (list, tuple))
        and len(value) == 2
        and any(part is not None for part in value)
    ]


def missing_weights(files: list[str], selected: list[str], model_index: dict[str, Any] | None) -> list[str]:
    """Components whose folder has weights in some format but none in the selection (e.g. only .bin)."""
    if model_index is None:
        return []
    chosen = set(selected)
    missing = []
    for component in pipeline_components(model_index):
        weights = [f for f in files if f.startswith(component + "/") and f.endswith(WEIGHT_SUFFIXES)]
        if weights and not any(w in chosen for w in weights):
            missing.append(component)
    return missing


def is_config(path: str) -> bool:
    name = PurePosixPath(path).name
    if _is_weight_index(name):
        return False
    return name.endswith(CONFIG_SUFFIXES) or name in TOKENIZER_FILES


def variant_of(name: str) -> str | None:
    """`fp16` for `x.fp16.safetensors`, `x-00001-of-00002.fp16.safetensors`,
    `x.fp16-00001-of-00002.safetensors` and `x.safetensors.index.fp16.json` (the namings diffusers and
    transformers use); None for plain files."""
    for token in PurePosixPath(name).name.split(".")[1:-1]:
        token = _SHARD.sub("", token)
        if token not in _NOT_VARIANTS and _VARIANT_TOKEN.match(token):
            return token
    return None


def _is_weight_index(name: str) -> bool:
    return name.endswith(".json") and ".index" in name and any(f"{s}.index" in name for s in WEIGHT_SUFFIXES)


def _is_safetensors(name: str) -> bool:
    return name.endswith(".safetensors") or (name.endswith(".json") and ".safetensors.index" in name)


def _family(path: str) -> tuple[str, str]:
    """Files that are copies of one weight in other variants or shards share a family:
    (folder, stem without shard suffix), e.g. ("unet", "diffusion_pytorch_model")."""
    p = PurePosixPath(path)
    return str(p.parent), _SHARD.sub("", p.name.split(".")[0])


def _pick(paths: list[str], variant: str | None) -> set[str]:
    chosen = {p for p in paths if is_config(p)}
    families: dict[tuple[str, str], list[str]] = defaultdict(list)
    for p in paths:
        if _is_safetensors(PurePosixPath(p).name):
            families[_family(p)].append(p)
    for members in families.values():
        wanted = [m for m in members if variant is not None and variant_of(m) == variant]
        # Like diffusers: a variant is taken where the repo has it, the plain weights elsewhere.
        chosen |= set(wanted or [m for m in members if variant_of(m) is None])
    return chosen


def _matches(path: str, patterns: Iterable[str]) -> bool:
    # A trailing "/" means "everything in that folder", as in huggingface_hub's allow_patterns.
    return any(fnmatch.fnmatch(path, pat + "*" if pat.endswith("/") else pat) for pat in patterns)


def read_model_index(path: Path) -> dict[str, Any]:
    """A model_index.json as a dict: OSError when it cannot be read, ValueError (saying why) when it is not
    a JSON object. The one reader of the file; callers word the error for what they were doing."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"is a JSON {type(data).__name__}, not an object")
    return data


def model_index_in(folder: Path) -> dict[str, Any] | None:
    """The folder's model_index.json, or None where there is none that reads as an object."""
    try:
        return read_model_index(folder / MODEL_INDEX)
    except (OSError, ValueError):
        return None
