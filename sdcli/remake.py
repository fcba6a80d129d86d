"""`--from IMAGE`: the parameters stored in an image become the defaults, and the command line wins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli import metadata

# Command parameter -> sdcli record key. Device and dtype are not taken: they describe the machine, and
# `auto` picks the same ones again on the same machine.
STORED = {
    "prompt": "prompt",
    "negative": "negative",
    "model": "model",
    "variant": "variant",
    "steps": "steps",
    "guidance": "guidance",
    "width": "width",
    "height": "height",
    "seed": "seed",
    "scheduler": "sampler",
    "schedule": "schedule",
    "rng": "rng",
    "strength": "strength",
    "clip_skip": "clip_skip",
    "weighting": "weighting",
}


def read_record(image: Path) -> dict[str, Any]:
    return metadata.record_for_remake(metadata.read_metadata(image))


def read_record_and_warnings(image: Path) -> tuple[dict[str, Any], list[str]]:
    """The record, and what in the image was unusable (an sdcli chunk of the wrong shape, say)."""
    meta = metadata.read_metadata(image)
    return metadata.record_for_remake(meta), meta.warnings


def merge(record: dict[str, Any], values: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """`values` with every parameter the user did not give replaced by the stored one, where there is one."""
    merged = dict(values)
    for param, key in STORED.items():
        if param in values and param not in given and record.get(key) is not None:
            merged[param] = record[key]
    if "model" not in given and "revision" in values and "revision" not in given:
        merged["revision"] = record.get("commit") or record.get("revision") or values["revision"]
    return merged


def scheduler_state(record: dict[str, Any], given: set[str]) -> tuple[str, dict[str, Any]] | None:
    """The exact scheduler class and config an sdcli image used, unless the user picked another."""
    stored = record.get("scheduler")
    if {"scheduler", "schedule"} & given or not isinstance(stored, dict):
        return None
    if not isinstance(stored.get("class"), str) or not isinstance(stored.get("config"), dict):
        return None
    return stored["class"], stored["config"]
