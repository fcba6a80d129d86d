"""`--prompts-file`: many prompts for one model load, as plain lines or JSON Lines, checked before loading."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sdcli.core.requests import MAX_SEED, GenerationRequest
from sdcli.errors import SdcliError, UsageError

# JSON Lines keys -> GenerationRequest fields (the CLI's names, plus A1111's `cfg`).
LINE_KEYS = {
    "prompt": "prompt",
    "negative": "negative",
    "seed": "seed",
    "steps": "steps",
    "guidance": "guidance",
    "cfg": "guidance",
    "width": "width",
    "height": "height",
    "count": "count",
}
TYPES: dict[str, tuple[type, ...]] = {
    "prompt": (str,),
    "negative": (str,),
    "seed": (int,),
    "steps": (int,),
    "guidance": (int, float),
    "width": (int,),
    "height": (int,),
    "count": (int,),
}


@dataclass(frozen=True)
class PromptLine:
    line: int  # 1-based line number in the file
    request: GenerationRequest


def read_text(path: str) -> str:
    if path == "-":
        import sys

        try:
            return sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise UsageError(f"--prompts-file -: stdin is not valid UTF-8 text ({exc.reason})") from None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--prompts-file {path}: cannot read it ({exc})") from exc


def _fields(text: str, number: int) -> dict[str, Any]:
    if not text.startswith("{"):
        return {"prompt": text}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"line {number}: not valid JSON ({exc.msg})") from exc
    unknown = sorted(set(obj) - set(LINE_KEYS))
    if unknown:
        raise UsageError(
            f"line {number}: unknown key(s) {', '.join(unknown)}", hint=f"use {', '.join(LINE_KEYS)}"
        )
    fields = {LINE_KEYS[key]: value for key, value in obj.items()}
    for name, value in fields.items():
        if not isinstance(value, TYPES[name]) or isinstance(value, bool):
            raise UsageError(f"line {number}: {name} must be {TYPES[name][0].__name__}, got {value!r}")
    if not fields.get("prompt"):
        raise UsageError(f"line {number}: no prompt")
    return fields


def parse(text: str, defaults: GenerationRequest) -> list[PromptLine]:
    """Every line validated before any model loads. A line without a seed continues from the run's seed:
    the images of the k-th prompt (counting from 0) get seeds seed + k*count + i, as if one long run."""
    assert defaults.seed is not None, "defaults must be validated"
    lines: list[PromptLine] = []
    next_seed = defaults.seed
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = _fields(stripped, number)
        fields.setdefault("seed", next_seed % (MAX_SEED + 1))
        try:
            # A line's own steps/guidance are given values: a model family's defaults must not replace them.
            defaulted = defaults.defaulted - fields.keys()
            request = replace(defaults, **fields, defaulted=defaulted).validated()
        except SdcliError as exc:
            raise UsageError(f"line {number}: {exc.message}", exc.hint) from exc
        lines.append(PromptLine(number, request))
        next_seed += defaults.count
    if not lines:
        raise UsageError("the prompts file holds no prompts")
    return lines
