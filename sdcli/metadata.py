"""Generation parameters in and out of image files.

One image's canonical record is a plain, JSON-serialisable dict (the "sdcli record", stored as JSON in the PNG
text chunk `sdcli`). Next to it goes an AUTOMATIC1111-style `parameters` text so that other tools can read the
image. Reading understands sdcli, A1111 (PNG text or JPEG/WebP EXIF UserComment), ComfyUI and InvokeAI.

Only pillow and the standard library here (`sdcli info IMAGE` must not import torch); nothing here adds paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PureWindowsPath
from typing import Any

from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from sdcli import __version__, schedulers
from sdcli.errors import UsageError
from sdcli.foreign_metadata import comfyui_fields, invokeai_fields

SCHEMA = 1
Value = str | int | float

# A1111's own parser (modules/infotext_utils.py).
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(?:\d+\.\d*|\.\d+)$")
_HASH10_RE = re.compile(r"^[0-9a-f]{10}$")
# Values that may look numeric but are names ("Model: 2") or hex ("Model hash: 1234567890").
_TEXT_KEYS = frozenset({"Model", "VAE", "Version", "Sampler", "Schedule type", "User"})
_FORMATS = ["PNG", "JPEG", "WEBP"]
_KNOWN_CHUNKS = frozenset({"sdcli", "parameters", "prompt", "invokeai_metadata"})
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286


@dataclass(frozen=True)
class A1111Params:
    prompt: str
    negative: str
    params: dict[str, Value]


@dataclass(frozen=True)
class ImageMetadata:
    file: str  # the file name only, never its folder
    format: str  # "PNG", "JPEG" or "WEBP"
    source: str | None  # "sdcli", "a1111", "comfyui", "invokeai", or None when nothing was found
    prompt: str | None
    negative: str | None
    parameters: dict[str, Value]  # A1111 keys, typed; Size is split into Width and Height
    record: dict[str, Any] | None  # the sdcli record when the image has one
    raw: dict[str, str]  # every text chunk as found (EXIF UserComment shows up as "parameters")


# -- writing -------------------------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """Write a value the way A1111 does: plain numbers, JSON-quoted text only when the parser needs it."""
    if isinstance(value, int):  # bool too
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        # repr is the shortest exact form; Decimal drops its exponent ("1e-05" -> "0.00001").
        return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
    text = str(value)
    # A leading quote would make the parser try to JSON-decode a raw value, so quote that too.
    if any(c in text for c in ",:\n\r") or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _hash_list(items: Any) -> str | None:
    # A1111 strips ":" and "," from names so that the "name: hash, ..." list stays parseable.
    pairs = [
        f"{str(item.get('name', '')).replace(':', '').replace(',', '')}: {item['hash']}"
        for item in items or ()
        if isinstance(item, Mapping) and item.get("hash")
    ]
    return ", ".join(pairs) or None


def _a1111_fields(r: Mapping[str, Any]) -> dict[str, Any]:
    def need(key: str) -> Any:  # third-party readers want these keys present, whatever they hold
        return "unknown" if r.get(key) is None else r[key]

    width, height = r.get("width"), r.get("height")
    clip_skip = r.get("clip_skip")
    init_image = r.get("init_image") or {}
    version = (r.get("versions") or {}).get("sdcli") or __version__
    # FLUX.1 has no real CFG: Forge writes "CFG scale: 1" and the distilled guidance under its own key.
    kind = r.get("guidance_kind")
    distilled = kind in ("distilled", "none")
    return {  # A1111's key order
        "Steps": need("steps"),
        "Sampler": need("sampler"),
        "Schedule type": r.get("schedule"),
        "CFG scale": 1 if distilled else need("guidance"),
        "Distilled CFG Scale": r.get("guidance") if kind == "distilled" else None,
        "Seed": need("seed"),
        "Size": f"{width}x{height}" if width and height else "unknown",
        "Model hash": r.get("model_hash"),
        "Model": need("model"),
        "VAE": r.get("vae"),
        "Denoising strength": r.get("strength"),
        "Clip skip": clip_skip if isinstance(clip_skip, int) and clip_skip > 1 else None,
        "Init image hash": init_image.get("hash"),
        "RNG": "CPU" if r.get("rng") == "cpu" else None,  # A1111's default is GPU noise
        "Lora hashes": _hash_list(r.get("loras")),
        "TI hashes": _hash_list(r.get("embeddings")),
        "Version": f"sdcli {version}",
    }


def a1111_parameters(record: Mapping[str, Any]) -> str:
    """The A1111 `parameters` text for a record (the record's `clip_skip` uses A1111 numbering)."""
    prompt = record.get("prompt") or ""
    negative = record.get("negative") or ""
    negative_line = f"\nNegative prompt: {negative}" if negative else ""
    fields = _a1111_fields(record).items()
    line = ", ".join(f"{key}: {format_value(value)}" for key, value in fields if value is not None)
    return f"{prompt}{negative_line}\n{line}".strip()


def _add_text(info: PngInfo, key: str, text: str) -> None:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:  # tEXt is Latin-1 only; iTXt carries UTF-8 (CJK, emoji)
        info.add_itxt(key, text)
    else:
        info.add_text(key, text)


def png_info(record: Mapping[str, Any], *, extra: dict[str, str] | None = None) -> PngInfo:
    """PNG text chunks for one image: `parameters` (A1111 text) and `sdcli` (the JSON record)."""
    info = PngInfo()
    _add_text(info, "parameters", a1111_parameters(record))
    _add_text(info, "sdcli", json.dumps(record, ensure_ascii=False, sort_keys=True))
    for key, text in (extra or {}).items():
        _add_text(info, key, text)
    return info


# -- parsing A1111 text --------------------------------------------------------------------------------------


def _typed(key: str, value: str) -> Value:
    if key in _TEXT_KEYS or "hash" in key.lower():
        return value
    if _INT_RE.match(value):
        return int(value)
    if _FLOAT_RE.match(value):
        return float(value)
    return value


def _typed_params(pairs: list[tuple[str, str]]) -> dict[str, Value]:
    params: dict[str, Value] = {}
    for key, raw in pairs:
        value = raw
        if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
            with contextlib.suppress(ValueError):  # A1111 keeps a value that is not valid JSON as it is
                value = str(json.loads(raw))
        size = _SIZE_RE.match(value) if key == "Size" else None
        if size:
            params["Width"], params["Height"] = int(size[1]), int(size[2])
        else:
            params[key] = _typed(key, value)
    return _split_legacy_sampler(params)


def _split_legacy_sampler(params: dict[str, Value]) -> dict[str, Value]:
    # Before v1.9 A1111 put the schedule in the sampler name ("DPM++ 2M Karras"); the suffix wins, as there.
    sampler = params.get("Sampler")
    base, schedule = schedulers.split_schedule(sampler) if isinstance(sampler, str) else ("", None)
    if schedule is None:
        return params
    out: dict[str, Value] = {}
    for key, value in params.items():
        if key == "Schedule type":
            continue
        out[key] = base if key == "Sampler" else value
        if key == "Sampler":
            out["Schedule type"] = schedule
    return out


def _append_line(text: str, line: str) -> str:
    return line if text == "" else f"{text}\n{line}"


def parse_a1111(text: str) -> A1111Params:
    """Split A1111 `parameters` text into prompt, negative prompt and typed parameters, as A1111 does."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM_RE.findall(last)) < 3:  # not a parameters line: it belongs to the prompt
        lines.append(last)
        last = ""
    prompt = negative = ""
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        if in_negative:
            negative = _append_line(negative, line)
        else:
            prompt = _append_line(prompt, line)
    return A1111Params(prompt, negative, _typed_params(_PARAM_RE.findall(last)))


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def model_name(value: Any) -> str | None:
    """A model's name for the record: a checkpoint path becomes its file stem; a Hub id stays as it is."""
    if not isinstance(value, str) or not value.strip():
        return None
    name = value.strip()
    looks_like_file = "\\" in name or name.startswith(("/", "~")) or name.endswith((".safetensors", ".ckpt"))
    return PureWindowsPath(name).stem if looks_like_file else name


def _sampler_and_schedule(params: Mapping[str, Value]) -> tuple[str | None, str | None]:
    name, given = params.get("Sampler"), params.get("Schedule type")
    if not isinstance(name, str):
        return None, None
    automatic = given is None or str(given).casefold() == "automatic"
    try:
        choice = schedulers.resolve(name, None if automatic else str(given))
    except UsageError:  # keep what the image says: re-making it will report the unknown name
        return name, None if automatic else str(given)
    if given is not None and automatic:
        # A1111 v1.9+ writes "Automatic" for the sampler's own default (Karras for DPM++ 2M). A missing key
        # means an older A1111, where a plain "DPM++ 2M" used the model's default sigmas.
        entry = schedulers.find_sampler(choice.sampler)
        return choice.sampler, entry.default_schedule if entry else None
    return choice.sampler, choice.schedule


def record_from_a1111(parsed: A1111Params) -> dict[str, Any]:
    """A partial sdcli record from A1111-style parameters (also used for ComfyUI and InvokeAI images)."""
    p = parsed.params
    sampler, schedule = _sampler_and_schedule(p)
    model_hash = p.get("Model hash")
    record = {
        "schema": SCHEMA,
        "prompt": parsed.prompt,
        "negative": parsed.negative,
        "steps": _as_int(p.get("Steps")),
        # Forge's FLUX images: the distilled scale is the one the pipeline takes as guidance_scale.
        "guidance": _as_float(p.get("Distilled CFG Scale", p.get("CFG scale"))),
        "seed": _as_int(p.get("Seed")),
        "width": _as_int(p.get("Width")),
        "height": _as_int(p.get("Height")),
        "sampler": sampler,
        "schedule": schedule,
        "model": model_name(p.get("Model")),
        # Only the SHA-256 short hash; 8-digit hashes from old A1111 versions use another algorithm.
        "model_hash": model_hash if isinstance(model_hash, str) and _HASH10_RE.match(model_hash) else None,
        "clip_skip": _as_int(p.get("Clip skip")),
        "strength": _as_float(p.get("Denoising strength")),
        "rng": {"CPU": "cpu", "GPU": "device"}.get(str(p.get("RNG", "GPU"))),
    }
    return {key: value for key, value in record.items() if value is not None}


# -- reading files -------------------------------------------------------------------------------------------


def _decode_utf16(body: bytes) -> str:
    body = body[: len(body) // 2 * 2]
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return body.decode("utf-16", "replace")
    # EXIF says UCS-2 in the file's byte order, piexif (A1111) always writes big endian: guess from which
    # half of each pair holds the zero bytes of ASCII characters, big endian on a tie.
    little = body[1::2].count(0) > body[0::2].count(0)
    order = ("utf-16-le", "utf-16-be") if little else ("utf-16-be", "utf-16-le")
    for encoding in order:
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    return body.decode(order[0], "replace")


def decode_user_comment(value: bytes | str) -> str | None:
    """EXIF UserComment: an 8-byte charset prefix, then the text."""
    if isinstance(value, str):
        text = value
    elif value[:8] == b"UNICODE\0":
        text = _decode_utf16(value[8:])
    elif value[:8] == b"ASCII\0\0\0":
        text = value[8:].decode("ascii", "replace")
    else:
        body = value[8:] if value[:8] in (b"\0" * 8, b"JIS\0\0\0\0\0") else value
        text = body.decode("utf-8", "replace")
    return text.rstrip("\0").strip() or None


def _user_comment(im: Image.Image) -> str | None:
    # Pillow loads the whole image to look for a PNG eXIf chunk that comes after the pixels: skip that case.
    if im.format == "PNG" and "exif" not in im.info:
        return None
    value = im.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    return decode_user_comment(value) if isinstance(value, bytes | str) else None


def _raw_texts(im: Image.Image) -> dict[str, str]:
    raw = {k: str(v) for k, v in im.info.items() if isinstance(k, str) and isinstance(v, str)}
    if im.format == "PNG" and not raw.keys() & _KNOWN_CHUNKS:
        # Text chunks after the image data are only read by a full load; most writers put them first.
        raw.update({k: str(v) for k, v in getattr(im, "text", {}).items()})
    comment = im.info.get("comment")
    if isinstance(comment, bytes) and "comment" not in raw:  # JPEG COM segment
        raw["comment"] = comment.decode("utf-8", "replace")
    if "parameters" not in raw and (text := _user_comment(im)):
        raw["parameters"] = text
    return raw


def _json_object(text: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _interpret(name: str, fmt: str, raw: dict[str, str]) -> ImageMetadata:
    record = _json_object(raw.get("sdcli"))
    parameters_text = (raw.get("parameters") or "").strip()
    if record is not None:
        params = parse_a1111(parameters_text or a1111_parameters(record)).params
        prompt, negative = record.get("prompt") or "", record.get("negative") or ""
        return ImageMetadata(name, fmt, "sdcli", prompt, negative, params, record, raw)
    if parameters_text:
        parsed = parse_a1111(parameters_text)
        return ImageMetadata(name, fmt, "a1111", parsed.prompt, parsed.negative, parsed.params, None, raw)
    graph = _json_object(raw.get("prompt"))
    if graph is not None:
        prompt, negative, params = comfyui_fields(graph)
        return ImageMetadata(name, fmt, "comfyui", prompt, negative, params, None, raw)
    if any(key.startswith("invokeai") for key in raw):
        prompt, negative, params = invokeai_fields(_json_object(raw.get("invokeai_metadata")) or {})
        return ImageMetadata(name, fmt, "invokeai", prompt, negative, params, None, raw)
    return ImageMetadata(name, fmt, None, None, None, {}, None, raw)


def read_metadata(path: str | os.PathLike[str]) -> ImageMetadata:
    """Read whatever generation parameters an image carries; UsageError if it is not a readable image."""
    name = Path(path).name
    try:
        with Image.open(path, formats=_FORMATS) as im:
            fmt = im.format or "?"
            raw = _raw_texts(im)
    except FileNotFoundError as exc:
        raise UsageError(f"{name}: no such file") from exc
    except UnidentifiedImageError as exc:
        raise UsageError(f"{name}: not a PNG, JPEG or WebP image") from exc
    except (OSError, ValueError, SyntaxError, EOFError, zlib.error, Image.DecompressionBombError) as exc:
        # Pillow's guards against oversized text chunks raise ValueError ("Decompressed data too large ...").
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise UsageError(f"{name}: cannot read its metadata ({reason})") from exc
    return _interpret(name, fmt, raw)


def record_for_remake(meta: ImageMetadata) -> dict[str, Any]:
    """The record to re-make an image from: its sdcli record, else its A1111/ComfyUI/InvokeAI parameters."""
    if meta.record is not None:
        return dict(meta.record)
    if meta.source is not None and (meta.prompt or meta.parameters):
        return record_from_a1111(A1111Params(meta.prompt or "", meta.negative or "", dict(meta.parameters)))
    raise UsageError(
        f"{meta.file} carries no generation parameters",
        hint="sdcli re-makes images written by sdcli, AUTOMATIC1111/Forge, ComfyUI and InvokeAI",
    )
