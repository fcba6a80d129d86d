"""Generation parameters in and out of image files.

One image's canonical record is a plain, JSON-serialisable dict (the "sdcli record", stored as JSON in the PNG
text chunk `sdcli`). Next to it goes an AUTOMATIC1111-style `parameters` text so that other tools can read the
image. Reading understands sdcli, A1111 (PNG text or JPEG/WebP EXIF UserComment), ComfyUI and InvokeAI here,
and through `foreign_formats` SwarmUI, Fooocus, NovelAI, Stability Matrix, Draw Things and others. Every
reader treats the file as hostile: parsing is linear in the text's length, and metadata of the wrong shape
is a warning in `ImageMetadata.warnings`, never an exception.

Only pillow and the standard library here (`sdcli info IMAGE` must not import torch); nothing here adds paths.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PureWindowsPath
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from sdcli import __version__
from sdcli.errors import UsageError
from sdcli.images import foreign_formats as ff
from sdcli.images.foreign import comfyui_fields, invokeai_fields
from sdcli.images.inputs import FORMATS
from sdcli.images.record_shape import is_int, is_number, record_problem
from sdcli.model import schedulers

SCHEMA = 1
# The ControlNet extension's preprocessor for IP-Adapters with the ViT-H image encoder (h94's SD 1.5 ones
# and SDXL vit-h); ip-adapter_clip_g is the ViT-bigG one of h94's plain SDXL adapters.
IP_ADAPTER_MODULE = "ip-adapter_clip_h"
Value = str | int | float

# A1111's own parser (modules/infotext_utils.py), kept as the reference that `_param_pairs` must agree with.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# The same matches in one linear pass. `_PARAM_RE.findall` retries at every position after a failed match,
# and each retry scans the rest of a run of key characters again: quadratic in a line without a colon (40 KB
# took 12 s). A key starts at the first letter of its run of key characters (findall's matches end in "," and
# a run never crosses one), so the lookbehind lets a match start only where a run starts and each run is
# scanned once. The quoted value is the same language, written without nested alternation.
_PARAM_SCAN_RE = re.compile(
    r'(?<![\w \-/])[ \-/]*(\w[\w \-/]+):\s*("[^\\"]*(?:\\.[^\\"]*)*"(?=,|$)|[^,]*)(?:,|$)'
)
# Real parameter lines have dozens of keys; typing a hostile line's millions would take seconds per million.
_MAX_PAIRS = 1000
_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(?:\d+\.\d*|\.\d+)$")
_HASH10_RE = re.compile(r"^[0-9a-f]{10}$")
# Values that may look numeric but are names ("Model: 2") or hex ("Model hash: 1234567890").
_TEXT_KEYS = frozenset({"Model", "VAE", "Version", "Sampler", "Schedule type", "User"})
_KNOWN_CHUNKS = frozenset({"sdcli", "parameters", "prompt", "invokeai_metadata"})
# A parameters line names at least two of these: what tells A1111 infotext from any other comment.
_INFOTEXT_KEYS = frozenset({"Steps", "Sampler", "CFG scale", "Seed", "Width", "Model"})
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
    source: (
        str | None
    )  # "sdcli", "a1111", "comfyui", ... (README's info section), None when nothing was found
    prompt: str | None
    negative: str | None
    parameters: dict[str, Value]  # A1111 keys, typed; Size is split into Width and Height
    record: dict[str, Any] | None  # the sdcli record when the image has one
    raw: dict[str, str]  # every text chunk as found (EXIF UserComment shows up as "parameters")
    warnings: list[str] = field(default_factory=list)  # metadata found but not usable, and why


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


def _union_type(mode: Any) -> dict[str, str]:
    from sdcli.core.control_specs import A1111_UNION_TYPES, UNION_MODES

    index = UNION_MODES.get(mode) if isinstance(mode, str) else None
    return {} if index is None else {"Union Control Type": A1111_UNION_TYPES[index]}


def _union_mode(text: str | None) -> dict[str, str]:
    """A1111's `Union Control Type: Canny/Lineart/...` as the record's mode: the first of sdcli's names."""
    from sdcli.core.control_specs import A1111_UNION_TYPES, UNION_MODES

    if text not in A1111_UNION_TYPES:
        return {}
    index = A1111_UNION_TYPES.index(text)
    return {"mode": next(name for name, value in UNION_MODES.items() if value == index)}


def _controlnet_fields(controlnets: Any, ip_adapters: Any) -> dict[str, str]:
    """A1111's ControlNet extension's `ControlNet N: "Module: ..., Model: NAME [HASH], Weight: ..."` units
    (quoted by format_value: they hold `:` and `,`). The extension runs IP-Adapters as units too (module
    `ip-adapter_clip_*`), so they follow the ControlNets, numbered on, as A1111 readers expect them."""
    found: dict[str, str] = {}
    units = [(item, False) for item in (controlnets if isinstance(controlnets, list) else ())]
    units += [(item, True) for item in (ip_adapters if isinstance(ip_adapters, list) else ())]
    for item, is_ip in units:
        if not isinstance(item, Mapping):
            continue
        name = str(item.get("name", "")).replace(":", "").replace(",", "")
        # A ControlNet's `module` (depth: the estimator's A1111 name) is more exact than its preprocess.
        default = IP_ADAPTER_MODULE if is_ip else item.get("preprocess") or "none"
        module = item.get("module") or default
        unit = {
            "Module": str(module).replace(":", "").replace(",", ""),
            "Model": f"{name} [{item['hash']}]" if item.get("hash") else name,
            "Weight": item.get("scale", 1.0),
            "Guidance Start": 0.0 if is_ip else item.get("start", 0.0),
            "Guidance End": 1.0 if is_ip else item.get("end", 1.0),
            **({} if is_ip else _union_type(item.get("mode"))),
        }
        text = ", ".join(
            f"{key}: {format_value(value) if is_number(value) else value}" for key, value in unit.items()
        )
        found[f"ControlNet {len(found)}"] = text
    return found


def _schedule_label(r: Mapping[str, Any]) -> str | None:
    """The Schedule type to write. None in the record means the model's own sigmas; for a sampler whose
    A1111 "Automatic" is something else (DPM++ 2M: Karras, the SDE family: Exponential), a missing key would
    make A1111 and Civitai re-make it with that, so name the model's own sigmas: A1111 calls them Uniform."""
    if r.get("schedule") is not None:
        return str(r["schedule"])
    entry = schedulers.find_sampler(r["sampler"]) if isinstance(r.get("sampler"), str) else None
    return "Uniform" if entry is not None and entry.default_schedule is not None else None


_LORA_TAG_RE = re.compile(r" ?<lora:[^<>]*>")  # the one space the writer puts before a tag


def _lora_tags(prompt: str, loras: Any) -> str:
    """The prompt with A1111's `<lora:name:scale>` for each LoRA: how A1111 and Civitai know to apply them."""
    tags = []
    for item in loras or ():
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        name = re.sub(r"[:<>]", "", str(item["name"]))
        scale = item.get("scale", 1.0)
        if f"<lora:{name}:" not in prompt and f"<lora:{name}>" not in prompt:
            tags.append(f"<lora:{name}:{format_value(scale if is_number(scale) else 1.0)}>")
    return " ".join([prompt, *tags]) if prompt and tags else prompt or " ".join(tags)


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
        "Schedule type": _schedule_label(r),
        "CFG scale": 1 if distilled else need("guidance"),
        "Distilled CFG Scale": r.get("guidance") if kind == "distilled" else None,
        "Seed": need("seed"),
        "Size": f"{width}x{height}" if width and height else "unknown",
        "Model hash": r.get("model_hash"),
        "Model": need("model"),
        "VAE": r.get("vae"),
        "Denoising strength": r.get("hires_strength") if r.get("strength") is None else r.get("strength"),
        "Clip skip": clip_skip if isinstance(clip_skip, int) and clip_skip > 1 else None,
        "Init image hash": init_image.get("hash"),
        "RNG": "CPU" if r.get("rng") == "cpu" else None,  # A1111's default is GPU noise
        **_hires_fields(r),
        **_refiner_fields(r),
        "Mask blur": r.get("mask_blur"),
        "Lora hashes": _hash_list(r.get("loras")),
        "TI hashes": _hash_list(r.get("embeddings")),
        **_controlnet_fields(r.get("controlnets"), r.get("ip_adapters")),
        "Version": f"sdcli {version}",
    }


# sdcli's --hires-upscaler -> A1111's upscaler name. A1111's plain "Latent" is bilinear; nearest is this one.
HIRES_UPSCALER_NAMES = {"latent": "Latent (nearest)", "lanczos": "Lanczos"}
# Read back: A1111's "Latent" (bilinear) is taken as the nearest sdcli has; other upscalers stay as named,
# and re-making the image says --hires-upscaler does not know them.
_HIRES_UPSCALERS_READ = {"latent (nearest)": "latent", "latent": "latent", "lanczos": "lanczos"}


def _hires_fields(r: Mapping[str, Any]) -> dict[str, Any]:
    if r.get("hires_scale") is None:
        return {}
    upscaler = r.get("hires_upscaler")
    return {  # A1111 writes Hires steps only when they are not the main pass's
        "Hires upscale": r["hires_scale"],
        "Hires steps": r.get("hires_steps") or None,
        "Hires upscaler": HIRES_UPSCALER_NAMES.get(str(upscaler), upscaler),
    }


def _hires_from_a1111(p: Mapping[str, Value]) -> dict[str, Any]:
    scale = _as_float(p.get("Hires upscale"))
    if scale is None:
        return {}
    upscaler = p.get("Hires upscaler")
    return {
        "hires_scale": scale,
        "hires_steps": _as_int(p.get("Hires steps")) or 0,
        "hires_strength": _as_float(p.get("Denoising strength")),
        "hires_upscaler": _HIRES_UPSCALERS_READ.get(str(upscaler).casefold(), upscaler) if upscaler else None,
    }


def _refiner_fields(r: Mapping[str, Any]) -> dict[str, Any]:
    """A1111's `Refiner: name [short hash]`; the name loses the characters its parameter list splits at."""
    if not r.get("refiner"):
        return {}
    name = str(r["refiner"]).replace(",", "").replace(":", "")
    short = str(r["refiner_hash"])[:10] if r.get("refiner_hash") else None
    return {"Refiner": f"{name} [{short}]" if short else name, "Refiner switch at": r.get("refiner_switch")}


_REFINER_RE = re.compile(r"^(?P<name>.*?)(?: \[(?P<hash>[0-9a-fA-F]+)\])?$")


def _refiner_from_a1111(p: Mapping[str, Value]) -> dict[str, Any]:
    refiner = p.get("Refiner")
    if not isinstance(refiner, str) or not refiner.strip():
        return {}
    match = _REFINER_RE.match(refiner.strip())
    assert match is not None  # the pattern matches any text
    return {
        "refiner": model_name(match["name"]),
        "refiner_hash": match["hash"],
        "refiner_switch": _as_float(p.get("Refiner switch at")),
    }


def a1111_parameters(record: Mapping[str, Any]) -> str:
    """The A1111 `parameters` text for a record (the record's `clip_skip` uses A1111 numbering)."""
    prompt = _lora_tags(record.get("prompt") or "", record.get("loras"))
    negative = record.get("negative") or ""
    negative_line = f"\nNegative prompt: {negative}" if negative else ""
    fields = _a1111_fields(record).items()
    line = ", ".join(f"{key}: {format_value(value)}" for key, value in fields if value is not None)
    return f"{prompt}{negative_line}\n{line}".strip()


def _add_text(info: PngInfo, key: str, text: str) -> None:
    try:
        latin1 = text.encode("latin-1")
    except UnicodeEncodeError:  # tEXt is Latin-1 only; iTXt carries UTF-8 (CJK, emoji)
        info.add_itxt(key, text)
        return
    try:  # the reader takes tEXt bytes that are valid UTF-8 as UTF-8 (see _png_text): "Ã©" would read as "é"
        utf8 = not latin1.isascii() and bool(latin1.decode("utf-8"))
    except UnicodeDecodeError:
        utf8 = False
    if utf8:
        info.add_itxt(key, text)
    else:
        info.add_text(key, text)


def text_chunks(texts: Mapping[str, str]) -> PngInfo:
    """PNG text chunks holding `texts` as they are, each as tEXt or iTXt by what its text needs."""
    info = PngInfo()
    for key, text in texts.items():
        _add_text(info, key, text)
    return info


def png_info(record: Mapping[str, Any], *, extra: dict[str, str] | None = None) -> PngInfo:
    """PNG text chunks for one image: `parameters` (A1111 text) and `sdcli` (the JSON record)."""
    info = PngInfo()
    _add_text(info, "parameters", a1111_parameters(record))
    _add_text(info, "sdcli", json.dumps(record, ensure_ascii=False, sort_keys=True, allow_nan=False))
    for key, text in (extra or {}).items():
        _add_text(info, key, text)
    return info


# -- parsing A1111 text --------------------------------------------------------------------------------------


def _param_pairs(line: str) -> list[tuple[str, str]]:
    """What `_PARAM_RE.findall(line)` returns, in time linear in the line's length."""
    return _PARAM_SCAN_RE.findall(line)


def _typed(key: str, value: str) -> Value:
    if key in _TEXT_KEYS or "hash" in key.lower():
        return value
    if _INT_RE.match(value):
        with contextlib.suppress(ValueError):  # past Python's 4300-digit limit it stays text
            return int(value)
        return value
    if _FLOAT_RE.match(value) and math.isfinite(number := float(value)):  # 400 digits are inf: keep text
        return number
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


def parse_a1111(text: str) -> A1111Params:
    """Split A1111 `parameters` text into prompt, negative prompt and typed parameters, as A1111 does."""
    *lines, last = text.strip().split("\n")
    pairs = _param_pairs(last)
    if len(pairs) < 3:  # not a parameters line: it belongs to the prompt
        lines.append(last)
        pairs = []
    # Lists joined once: adding line by line to a string copied it for every line (quadratic in line count).
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        target = negative if in_negative else prompt
        if line or target:  # as in A1111, empty lines before the first text are dropped
            target.append(line)
    return A1111Params("\n".join(prompt), "\n".join(negative), _typed_params(pairs[:_MAX_PAIRS]))


def _as_int(value: Any) -> int | None:
    return value if is_int(value) else None


def _as_float(value: Any) -> float | None:
    return float(value) if is_number(value) else None


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
    units = _controlnets_from_a1111(p)
    record = {
        "schema": SCHEMA,
        # A1111 takes <lora:...> out of the prompt before the model sees it; the LoRA files are not here.
        "prompt": _LORA_TAG_RE.sub("", parsed.prompt).strip(),
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
        **_hires_from_a1111(p),
        **_refiner_from_a1111(p),
        "controlnets": [unit for unit in units if not _is_ip_adapter(unit)] or None,
        "ip_adapters": [_as_ip_adapter(unit) for unit in units if _is_ip_adapter(unit)] or None,
    }
    return {key: value for key, value in record.items() if value is not None}


_CONTROLNET_KEY_RE = re.compile(r"ControlNet \d{1,3}")
_CONTROLNET_MODEL_RE = re.compile(r"(.*?)(?: \[([0-9a-fA-F]{8,64})\])?")


def _controlnets_from_a1111(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ControlNet extension's `ControlNet N` units, as the record's `controlnets` (what is readable)."""
    found = []
    for key, value in params.items():
        if not _CONTROLNET_KEY_RE.fullmatch(str(key)) or not isinstance(value, str):
            continue
        unit = dict(part.partition(": ")[::2] for part in value.split(", ") if ": " in part)
        match = _CONTROLNET_MODEL_RE.fullmatch(unit.get("Model", "").strip())
        name, digest = (match.group(1), match.group(2)) if match else ("", None)
        numbers: dict[str, float] = {}
        for number, label, default in (
            ("scale", "Weight", 1.0),
            ("start", "Guidance Start", 0.0),
            ("end", "Guidance End", 1.0),
        ):
            try:
                read = float(unit.get(label, default))
            except ValueError:
                read = default
            numbers[number] = read if math.isfinite(read) else default
        found.append(
            {
                "name": name or None,
                "hash": digest,
                **numbers,
                "preprocess": unit.get("Module"),
                **_union_mode(unit.get("Union Control Type")),
            }
        )
    return found


def _is_ip_adapter(unit: Mapping[str, Any]) -> bool:
    return str(unit.get("preprocess") or "").startswith("ip-adapter")


def _as_ip_adapter(unit: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": unit["name"], "hash": unit["hash"], "scale": unit["scale"], "module": unit["preprocess"]}


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
    try:
        value = im.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # Pillow's EXIF parser meets malformed data with struct, key, type and index errors
        return None
    return decode_user_comment(value) if isinstance(value, bytes | str) else None


def _png_text(value: str) -> str:
    # tEXt and zTXt are Latin-1 by the standard, but Stability Matrix and others write UTF-8 there: text
    # that decodes as UTF-8 is taken as UTF-8 (Latin-1 text that happens to be valid UTF-8 is very rare).
    if isinstance(value, PngImagePlugin.iTXt) or value.isascii():
        return str(value)
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return str(value)


def _exif_graph(im: Image.Image) -> dict[str, str]:
    if im.format == "PNG" or "exif" not in im.info:
        return {}
    try:
        return ff.exif_graph_texts(im.getexif())
    except Exception:  # as in _user_comment
        return {}


def _raw_texts(im: Image.Image) -> dict[str, str]:
    found = {k: v for k, v in im.info.items() if isinstance(k, str) and isinstance(v, str)}
    if im.format == "PNG" and not found.keys() & _KNOWN_CHUNKS:
        # Text chunks after the image data are only read by a full load; most writers put them first.
        found.update(getattr(im, "text", {}))
    raw = {k: _png_text(v) if im.format == "PNG" else str(v) for k, v in found.items()}
    for key, graph in _exif_graph(im).items():
        raw.setdefault(key, graph)
    xmp = im.info.get("xmp")
    if isinstance(xmp, bytes) and "xmp" not in raw:  # JPEG and WebP XMP packets (PNG's is a text chunk)
        raw["xmp"] = xmp.decode("utf-8", "replace")
    comment = im.info.get("comment")
    if isinstance(comment, bytes) and "comment" not in raw:  # JPEG COM segment
        raw["comment"] = comment.decode("utf-8", "replace")
    if "parameters" not in raw and (text := _user_comment(im)):
        raw["parameters"] = text
    return raw


def _json_object(text: str | None) -> dict[str, Any] | None:
    value = ff.json_value(text)  # strict JSON, at most 64 levels deep
    return value if isinstance(value, dict) else None


def _chunk_object(raw: dict[str, str], key: str, what: str, problems: list[str]) -> dict[str, Any] | None:
    """The JSON object in chunk `key`; a chunk that looks like JSON but is not an object adds a warning."""
    text = raw.get(key)
    found = _json_object(text)
    if found is None and text is not None and text.lstrip()[:1] in ("{", "["):
        problems.append(f"its {key!r} text is not valid {what} metadata")
    return found


def _sdcli_record(raw: dict[str, str], problems: list[str]) -> dict[str, Any] | None:
    if "sdcli" not in raw:
        return None
    record = _json_object(raw["sdcli"])
    problem = "not a JSON object" if record is None else record_problem(record)
    if problem is not None:
        problems.append(f"its 'sdcli' text is not valid sdcli metadata ({problem})")
        return None
    return record


def is_infotext(parsed: A1111Params) -> bool:
    """Whether parsed text is A1111 infotext, not some other comment (a screenshot's "Screenshot")."""
    return len(_INFOTEXT_KEYS & parsed.params.keys()) >= 2


Found = tuple[str, tuple[str | None, str | None, dict[str, Value]]]


def _a1111_text(source: str, text: str) -> Found | None:
    parsed = parse_a1111(text)
    return (source, (parsed.prompt, parsed.negative, parsed.params)) if is_infotext(parsed) else None


def _foreign(raw: dict[str, str], text: str, problems: list[str]) -> Found | None:
    """Which tool wrote the image, by the chunks it writes, and what they say; most specific first."""
    if "parameters-json" in raw or "smproj" in raw:
        data = ff.json_value(raw.get("parameters-json"))
        if isinstance(data, dict):
            return "stability-matrix", ff.stability_matrix_fields(data)
        if text and (found := _a1111_text("stability-matrix", text)):
            return found
    # SwarmUI, Fooocus, NovelAI (WebP) and others write JSON where A1111 writes text.
    data = ff.json_value(text)
    if isinstance(data, dict):
        if found := ff.from_parameters_json(data):
            return found
        if raw.get("fooocus_scheme") == "fooocus":
            return "fooocus", ff.fooocus_fields(ff.normalised(data))
    elif text and (found := _a1111_text("a1111", text)):
        version = str(found[1][2].get("Version", ""))
        if raw.get("fooocus_scheme") == "a1111" or version.startswith("Fooocus"):
            return "fooocus", found[1]
        return found
    if isinstance(sui := ff.json_value(raw.get("sui_image_params")), dict):
        return "swarmui", ff.swarmui_fields(sui)
    if ff.is_novelai(raw):
        return "novelai", ff.novelai_fields(raw)
    if ff.is_easydiffusion_png(raw):
        return "easydiffusion", ff.easydiffusion_png_fields(raw)
    # A graph wins over text that is not infotext: ComfyUI nodes write all kinds of `parameters`.
    if (graph := _chunk_object(raw, "prompt", "ComfyUI", problems)) is not None:
        return "comfyui", comfyui_fields(graph)
    if any(key.startswith("invokeai") for key in raw):
        return "invokeai", invokeai_fields(
            _chunk_object(raw, "invokeai_metadata", "InvokeAI", problems) or {}
        )
    if isinstance(legacy := ff.json_value(raw.get("sd-metadata")), dict):
        return "invokeai", ff.invokeai_sd_metadata_fields(legacy)
    if raw.get("Dream"):
        return "invokeai", ff.invokeai_dream_fields(raw["Dream"])
    xmp = raw.get("XML:com.adobe.xmp") or raw.get("xmp")
    if xmp and (drawthings := ff.drawthings_json(xmp)) is not None:
        return "drawthings", ff.drawthings_fields(drawthings)
    return None


def _interpret(name: str, fmt: str, raw: dict[str, str]) -> ImageMetadata:
    problems: list[str] = []
    record = _sdcli_record(raw, problems)
    stealth = next((raw[key] for key in ff.STEALTH_SIGNATURES if key in raw), None)
    # A JPEG's COM segment ("comment") is where a few tools put what others put in the EXIF UserComment.
    parameters_text = (raw.get("parameters") or stealth or raw.get("comment") or "").strip()
    if record is not None:
        params = parse_a1111(parameters_text or a1111_parameters(record)).params
        prompt, negative = record.get("prompt") or "", record.get("negative") or ""
        return ImageMetadata(name, fmt, "sdcli", prompt, negative, params, record, raw, problems)
    try:
        found = _foreign(raw, parameters_text, problems)
    except Exception as exc:  # a reader's bug meeting odd data: report the rest of the image, not a crash
        problems.append(f"its metadata could not be read ({type(exc).__name__})")
        found = None
    if found is None:
        return ImageMetadata(name, fmt, None, None, None, {}, None, raw, problems)
    source, (prompt, negative, params) = found
    return ImageMetadata(name, fmt, source, prompt, negative, params, None, raw, problems)


def _with_stealth(im: Image.Image, raw: dict[str, str]) -> bool:
    """Add the pixels' stealth metadata to `raw`; False when there is none (or the pixels do not decode)."""
    if im.format not in ("PNG", "WEBP"):  # lossy formats destroy the low bits
        return False
    try:
        found = ff.stealth_text(im)
    except (OSError, ValueError, SyntaxError, EOFError, zlib.error, MemoryError):
        return False
    if found is None:
        return False
    raw[found[0]] = found[1]
    return True


def read_metadata(path: str | os.PathLike[str]) -> ImageMetadata:
    """Read whatever generation parameters an image carries; UsageError if it is not a readable image."""
    name = Path(path).name
    try:
        # Pillow warns (UserWarning, DecompressionBombWarning) about malformed EXIF and huge images on stderr:
        # what is wrong with a file is this function's answer, not extra lines around it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path, formats=FORMATS) as im:
                fmt = im.format or "?"
                raw = _raw_texts(im)
                meta = _interpret(name, fmt, raw)
                if meta.source is None and _with_stealth(im, raw):
                    meta = _interpret(name, fmt, raw)
    except FileNotFoundError as exc:
        raise UsageError(f"{name}: no such file") from exc
    except UnidentifiedImageError as exc:
        raise UsageError(f"{name}: not a PNG, JPEG or WebP image") from exc
    except (OSError, ValueError, SyntaxError, EOFError, zlib.error, Image.DecompressionBombError) as exc:
        # Pillow's guards against oversized text chunks raise ValueError ("Decompressed data too large ...").
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise UsageError(f"{name}: cannot read its metadata ({reason})") from exc
    return meta


def record_for_remake(meta: ImageMetadata) -> dict[str, Any]:
    """The record to re-make an image from: its sdcli record, else its A1111/ComfyUI/InvokeAI parameters."""
    if meta.record is not None:
        return dict(meta.record)
    if meta.source is not None and (meta.prompt or meta.parameters):
        record = record_from_a1111(A1111Params(meta.prompt or "", meta.negative or "", dict(meta.parameters)))
        if (problem := record_problem(record)) is not None:
            raise UsageError(f"{meta.file}: its {meta.source} parameters cannot be re-made ({problem})")
        return record
    if meta.warnings:  # what was there but unusable says more than the list of tools
        raise UsageError(f"{meta.file} carries no usable generation parameters: {meta.warnings[0]}")
    raise UsageError(
        f"{meta.file} carries no generation parameters",
        hint="sdcli re-makes images written by sdcli, AUTOMATIC1111/Forge, ComfyUI, InvokeAI, SwarmUI, "
        "Fooocus, NovelAI, Stability Matrix, Draw Things and Easy Diffusion",
    )
