"""LoRAs and textual-inversion embeddings: `--lora PATH_OR_REPO[:SCALE]`, `--embedding PATH[:TOKEN]`.

LoRAs stay separate adapters (diffusers `load_lora_weights` + `set_adapters` with one weight each) instead of
being fused into the base weights: the base weights are never rewritten, so scale 0 is exactly the model
without the LoRA, nothing is rounded into fp16 base weights, and it works behind CPU offload hooks. The cost
is a few low-rank matmuls per attention layer and step.

The specs (`sdcli/specs.py`) are parsed and checked before anything heavy is imported; this module loads
the files.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from typing import Any

from sdcli.core.specs import EmbeddingSpec, LoraSpec
from sdcli.errors import UsageError, first_line
from sdcli.model import checkpoints

_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """diffusers logs a failed LoRA load at error level and peft warns: sdcli reports the failure itself."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        diffusers_logging.set_verbosity(level)


def _reason(exc: BaseException) -> str:
    """One line out of a multi-line state-dict error: the first concrete mismatch when there is one."""
    text = str(exc)
    found = re.search(r"size mismatch for ([\w.]+?)\.lora_\w+.*?(\[[\d, ]+\]).*?(\[[\d, ]+\])", text)
    if found:
        return f"{found[1]} needs {found[3]}, the LoRA has {found[2]}"
    return first_line(exc)


def _unique(name: str, taken: set[str]) -> str:
    base = _NAME.sub("_", name).strip("_") or "lora"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate)
    return candidate


def _display_name(spec: str, weights: checkpoints.WeightsFile) -> str:
    # A bare Hub repo id usually holds `pytorch_lora_weights.safetensors`: the repo name says more.
    if weights.repo_id and spec.rstrip("/") == weights.repo_id:
        return weights.repo_id.split("/")[-1]
    return weights.path.stem


def load_loras(pipe: Any, loras: tuple[LoraSpec, ...]) -> list[dict[str, Any]]:
    """Load each LoRA as a named adapter and weight them; returns the metadata records."""
    from sdcli.model import hashes

    if not loras:
        return []
    records: list[dict[str, Any]] = []
    names: list[str] = []
    taken = {name for found in pipe.get_list_adapters().values() for name in found}
    for spec in loras:
        weights = checkpoints.resolve_file(spec.source, "--lora", None)
        name = _display_name(spec.source, weights)
        adapter = _unique(name, taken)
        state = checkpoints.load_weights(weights.path)
        try:
            with _quiet():
                pipe.load_lora_weights(state, adapter_name=adapter)
        except (ValueError, RuntimeError, KeyError, IndexError, TypeError) as exc:
            raise UsageError(f"LoRA {name} does not fit this model: {_reason(exc)}") from exc
        if not any(adapter in found for found in pipe.get_list_adapters().values()):
            raise UsageError(f"LoRA {name} does not fit this model: none of its layers match")
        names.append(adapter)
        records.append({"name": name, "hash": hashes.lora_hash(weights.path), "scale": spec.scale})
    pipe.set_adapters(names, adapter_weights=[spec.scale for spec in loras])
    return records


def _vectors(state: dict[str, Any], name: str) -> Any:
    """The embedding tensor of a diffusers ({token: tensor}) or A1111 (string_to_param / emb_params) file."""
    if isinstance(state.get("string_to_param"), dict) and "*" in state["string_to_param"]:
        return state["string_to_param"]["*"]
    if "emb_params" in state:
        return state["emb_params"]
    tensors = [value for value in state.values() if hasattr(value, "shape")]
    if len(tensors) == 1:
        return tensors[0]
    raise UsageError(f"embedding {name} is not a textual-inversion file (it holds {len(state)} entries)")


def load_embeddings(pipe: Any, embeddings: tuple[EmbeddingSpec, ...]) -> list[dict[str, Any]]:
    """Add each embedding's token to the tokenizer(s); SDXL files carry one tensor per text encoder."""
    from sdcli.model import hashes

    records: list[dict[str, Any]] = []
    xl = getattr(pipe, "text_encoder_2", None) is not None
    for spec in embeddings:
        weights = checkpoints.resolve_file(spec.source, "--embedding", None)
        name = weights.path.stem
        token = spec.token or name
        state = checkpoints.load_weights(weights.path)
        if xl != ({"clip_l", "clip_g"} <= state.keys()):
            kind = "an SDXL" if not xl else "an SD 1.x/2.x"
            raise UsageError(f"embedding {name} is {kind} embedding and does not fit this model")
        if xl:
            targets = [
                (state["clip_l"], pipe.text_encoder, pipe.tokenizer),
                (state["clip_g"], pipe.text_encoder_2, pipe.tokenizer_2),
            ]
        else:
            targets = [(_vectors(state, name), pipe.text_encoder, pipe.tokenizer)]
        try:
            with _quiet():
                for vectors, encoder, tokenizer in targets:
                    pipe.load_textual_inversion(
                        vectors, token=token, text_encoder=encoder, tokenizer=tokenizer
                    )
        except (ValueError, RuntimeError) as exc:
            raise UsageError(f"embedding {name} cannot be loaded: {_reason(exc)}") from exc
        records.append({"name": name, "hash": hashes.embedding_hash(weights.path), "token": token})
    return records
