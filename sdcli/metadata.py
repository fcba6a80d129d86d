"""Temporary stand-in until the metadata module lands."""

from __future__ import annotations

import json
from typing import Any


def a1111_parameters(record: dict[str, Any]) -> str:
    neg = f"\nNegative prompt: {record['negative']}" if record.get("negative") else ""
    params = (
        f"Steps: {record['steps']}, Sampler: {record['sampler']}, CFG scale: {record['guidance']:g}, "
        f"Seed: {record['seed']}, Size: {record['width']}x{record['height']}, Model: {record['model']}, "
        f"RNG: CPU, Version: sdcli {record['versions']['sdcli']}"
    )
    if record.get("strength") is not None:  # img2img / inpaint, in A1111's words
        params += f", Denoising strength: {record['strength']:g}"
    if record.get("init_image"):
        params += f", Init image hash: {record['init_image']['hash']}"
    return f"{record['prompt']}{neg}\n{params}"


def png_info(record: dict[str, Any]) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("parameters", a1111_parameters(record))
    info.add_itxt("sdcli", json.dumps(record, ensure_ascii=False, sort_keys=True))
    return info
