"""Temporary stand-in until the scheduler table lands."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe(class_name: str, config: Mapping[str, Any]) -> tuple[str, str | None]:
    return {"PNDMScheduler": "PLMS", "EulerDiscreteScheduler": "Euler"}.get(class_name, class_name), None


def resolve(name: str, schedule: str | None = None) -> Any:
    raise NotImplementedError


def build(choice: Any, base_config: Mapping[str, Any]) -> Any:
    raise NotImplementedError
