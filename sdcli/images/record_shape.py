"""Whether a JSON object read from an image has the shape of an sdcli record.

An image's `sdcli` chunk is user data like any other: a file edited by hand, written by another tool under
the same name, or made to break readers. Everything that shows or re-makes a record (`sdcli info`, `--from`)
relies on the types checked here, so a record that fails is reported as invalid rather than used.
Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Integers beyond what any sampler, seed or size can use; also keeps float(steps * strength) from overflowing.
_INT_LIMIT = 2**63

_TEXT = (
    "prompt",
    "negative",
    "model",
    "model_hash",
    "pipeline",
    "variant",
    "revision",
    "commit",
    "sampler",
    "schedule",
    "vae",
    "dtype",
    "device",
    "rng",
    "weighting",
    "config",
    "hires_upscaler",
    "refiner",
    "refiner_hash",
)
_INTEGER = ("schema", "steps", "seed", "width", "height", "clip_skip", "hires_steps")
_NUMBER = ("guidance", "strength", "hires_scale", "hires_strength", "refiner_switch")
_OBJECT = ("versions", "init_image", "scheduler", "upscale", "hires_upscaler_model")
# What re-making an image may ask for: a file asking for a billion steps or a 10^6-pixel side is not a
# record but a way to make `--from` run for ever.
_RANGES = {"steps": (1, 10_000), "width": (8, 16_384), "height": (8, 16_384)}
_LIST_OF_OBJECTS = ("loras", "embeddings", "controlnets", "ip_adapters")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_INT_LIMIT < value < _INT_LIMIT


def is_number(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return is_int(value)


def _is_list_of_objects(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, Mapping) for item in value)


def record_problem(record: Mapping[str, Any]) -> str | None:
    """Why `record` cannot be an sdcli record (the first key of the wrong type), or None when it can."""
    if not isinstance(record, Mapping):
        return "not a JSON object"
    checks = (
        (_TEXT, lambda v: isinstance(v, str), "text"),
        (_INTEGER, is_int, "an integer"),
        (_NUMBER, is_number, "a number"),
        (_OBJECT, lambda v: isinstance(v, Mapping), "an object"),
        (
            _LIST_OF_OBJECTS,
            lambda v: isinstance(v, list) and all(isinstance(i, Mapping) for i in v),
            "a list",
        ),
    )
    for keys, ok, kind in checks:
        for key in keys:
            value = record.get(key)
            if value is not None and not ok(value):
                return f"{key!r} is not {kind}"
    for key, (low, high) in _RANGES.items():
        value = record.get(key)
        if value is not None and not low <= value <= high:
            return f"{key!r} is not between {low} and {high}"
    if "schema" not in record:
        return "no 'schema'"
    versions = record.get("versions") or {}
    if not all(isinstance(v, str) or v is None for v in versions.values()):
        return "'versions' holds something other than text"
    scheduler = record.get("scheduler") or {}
    if scheduler and not (
        isinstance(scheduler.get("class"), str) and isinstance(scheduler.get("config"), dict)
    ):
        return "'scheduler' is not a class name and a config"
    return None
