"""Generation parameters of more tools: SwarmUI, Fooocus, RuinedFooocus, Easy Diffusion, NovelAI (text chunks,
WebP comment and the alpha-channel "stealth" format), legacy InvokeAI (`sd-metadata`, `Dream`), Stability
Matrix, Draw Things (XMP), and ComfyUI graphs in WebP/JPEG EXIF.

Like `foreign_metadata`, every reader returns (prompt, negative, params) with A1111's key names, so that
`metadata.record_from_a1111` re-makes these images too, and tolerates missing or odd pieces: each value is
taken only when it has the type it should have. Sampler spellings are normalised just enough for
`schedulers.resolve` ("k_euler_ancestral", "dpmpp_2m_sde_gpu" become "euler_ancestral", "dpmpp_2m_sde").
Only pillow and the standard library.
"""

from __future__ import annotations

import html
import json
import math
import re
import zlib
from collections.abc import Mapping
from typing import Any

from PIL import Image

from sdcli.images.record_shape import is_int, is_number

Value = str | int | float
Fields = tuple[str | None, str | None, dict[str, Value]]

STEALTH_SIGNATURES = ("stealth_pnginfo", "stealth_pngcomp", "stealth_rgbinfo", "stealth_rgbcomp")
_STEALTH_MAX_PIXELS = (
    16 * 1024 * 1024
)  # decoding the pixels is the cost of looking; bigger images are skipped
_STEALTH_MAX_BYTES = 4 * 1024 * 1024  # what the payload may decompress to
_LSB = bytes(0x30 | (b & 1) for b in range(256))  # a byte -> b"0" or b"1", its least significant bit
_EXIF_GRAPH_RE = re.compile(r"(prompt|workflow):\s*(?=[\[{])")
_NOVELAI_SOURCE_RE = re.compile(r"(.*?)\s+([0-9A-Fa-f]{8})")
_RESOLUTION_RE = re.compile(r"\(?\s*(\d+)\s*[,x×]\s*(\d+)\s*\)?")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(
        f"{name} is not JSON"
    )  # Python's json reads NaN and Infinity, which --json must not print


_MAX_DEPTH = 64  # real graphs and records nest a handful of levels


def _shallow(value: Any) -> bool:
    """Whether `value` nests at most _MAX_DEPTH levels; iterative, since the point is not to recurse."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth >= _MAX_DEPTH:
                    return False
                stack.append((child, depth + 1))
    return True


def json_value(text: str | None) -> Any:
    """Parsed strict JSON (finite numbers only, nesting at most 64 levels), or None for anything else.
    Deeper JSON that Python's parser still reads would make copying or printing it recurse too deep."""
    if not text or text.lstrip()[:1] not in ("{", "["):
        return None
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return None
    return value if _shallow(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 30:
        value = int(value.strip())  # Fooocus writes its seed as text
    return value if is_int(value) else None


def _number(value: Any) -> int | float | None:
    if isinstance(value, str) and len(value) < 40:
        try:
            value = float(value)
        except ValueError:
            return None
    return value if is_number(value) else None


def _sampler(value: Any) -> str | None:
    name = _text(value)
    if name is None:
        return None
    name = name.strip()
    if name.startswith("k_"):  # NovelAI and InvokeAI 2.x: k-diffusion names
        name = name[2:]
    return name.removesuffix("_gpu")  # Fooocus: ComfyUI's sampler names with a device suffix


def _clean(params: Mapping[str, Any]) -> dict[str, Value]:
    return {k: v for k, v in params.items() if isinstance(v, str | int | float) and not isinstance(v, bool)}


def normalised(data: Mapping[str, Any]) -> dict[str, Any]:
    """Keys lower-cased, spaces as underscores: Fooocus forks write "Guidance Scale" for guidance_scale."""
    return {str(k).strip().lower().replace(" ", "_"): v for k, v in data.items()}


# -- JSON `parameters` (and EXIF UserComment) ----------------------------------------------------------------


def from_parameters_json(data: Mapping[str, Any]) -> tuple[str, Fields] | None:
    """Which tool wrote this JSON `parameters` text, and what it says; None for JSON no reader knows."""
    if isinstance(data.get("sui_image_params"), Mapping):
        return "swarmui", swarmui_fields(data["sui_image_params"])
    n = normalised(data)
    software = str(n.get("software") or "").lower()
    if software == "novelai":
        return "novelai", novelai_fields(data)
    if software.startswith("ruinedfooocus"):
        return "ruinedfooocus", ruinedfooocus_fields(n)
    version = str(n.get("version") or "").lower()
    if n.get("metadata_scheme") == "fooocus" or version.startswith("fooocus") or "fooocus_v2_expansion" in n:
        return "fooocus", fooocus_fields(n)
    if "num_inference_steps" in n and "use_stable_diffusion_model" in n:
        return "easydiffusion", easydiffusion_fields(n)
    return None


def swarmui_fields(p: Mapping[str, Any]) -> Fields:
    clip = _int(p.get("clipstopatlayer"))
    version = _text(p.get("swarm_version"))
    params = {
        "Steps": _int(p.get("steps")),
        "Sampler": _sampler(p.get("sampler") or p.get("comfyuisampler") or p.get("autowebuisampler")),
        "Schedule type": _text(p.get("scheduler") or p.get("comfyuischeduler")),
        "CFG scale": _number(p.get("cfgscale")),
        "Seed": _int(p.get("seed")),
        "Width": _int(p.get("width")),
        "Height": _int(p.get("height")),
        "Model": _text(p.get("model")),
        "VAE": _text(p.get("vae")),
        "Denoising strength": _number(p.get("initimagecreativity")),
        "Clip skip": -clip if clip is not None and clip < -1 else None,  # -2: skip the last layer
        "RNG": "CPU",  # SwarmUI renders through ComfyUI, which makes its noise on the CPU
        "Version": f"SwarmUI {version}" if version else None,
    }
    return _text(p.get("prompt")), _text(p.get("negativeprompt")), _clean(params)


def _size(value: Any) -> tuple[int | None, int | None]:
    match = _RESOLUTION_RE.fullmatch(value.strip()) if isinstance(value, str) and len(value) < 40 else None
    return (int(match[1]), int(match[2])) if match else (None, None)


def fooocus_fields(n: Mapping[str, Any]) -> Fields:
    width, height = _size(n.get("resolution"))
    params = {
        "Steps": _int(n.get("steps")),
        "Sampler": _sampler(n.get("sampler")),
        "Schedule type": _text(n.get("scheduler")),
        "CFG scale": _number(n.get("guidance_scale")),
        "Seed": _int(n.get("seed")),
        "Width": _int(n.get("width")) or width,
        "Height": _int(n.get("height")) or height,
        "Model hash": _text(n.get("base_model_hash")),
        "Model": _text(n.get("base_model")),
        "VAE": _text(n.get("vae")),
        "Clip skip": _int(n.get("clip_skip")),
        "Sharpness": _number(n.get("sharpness")),
        "RNG": "CPU",  # Fooocus samples with ComfyUI's code, noise on the CPU
        "Version": _text(n.get("version")),
    }
    return _text(n.get("prompt")), _text(n.get("negative_prompt")), _clean(params)


def ruinedfooocus_fields(n: Mapping[str, Any]) -> Fields:
    params = {
        "Steps": _int(n.get("steps")),
        "Sampler": _sampler(n.get("sampler_name")),
        "Schedule type": _text(n.get("scheduler")),
        "CFG scale": _number(n.get("cfg")),
        "Seed": _int(n.get("seed")),
        "Width": _int(n.get("width")),
        "Height": _int(n.get("height")),
        "Model hash": _text(n.get("base_model_hash")),
        "Model": _text(n.get("base_model_name")),
        "Clip skip": _int(n.get("clip_skip")),
        "RNG": "CPU",
        "Version": _text(n.get("software")),
    }
    return _text(n.get("prompt")), _text(n.get("negative")), _clean(params)


# Easy Diffusion's PNGs: one text chunk per setting, in either spelling.
_EASYDIFFUSION_TITLES = {
    "stable_diffusion_model": "use_stable_diffusion_model",
    "steps": "num_inference_steps",
    "sampler": "sampler_name",
    "vae_model": "use_vae_model",
}


def is_easydiffusion_png(chunks: Mapping[str, Any]) -> bool:
    n = normalised(chunks)
    return "negative_prompt" in n and bool(
        {"use_stable_diffusion_model", "stable_diffusion_model", "num_inference_steps"} & n.keys()
    )


def easydiffusion_png_fields(chunks: Mapping[str, Any]) -> Fields:
    n = normalised(chunks)
    return easydiffusion_fields({_EASYDIFFUSION_TITLES.get(k, k): v for k, v in n.items()})


def easydiffusion_fields(n: Mapping[str, Any]) -> Fields:
    model = _text(n.get("use_stable_diffusion_model"))
    params = {
        "Steps": _int(n.get("num_inference_steps")),
        "Sampler": _sampler(n.get("sampler_name")),
        "CFG scale": _number(n.get("guidance_scale")),
        "Seed": _int(n.get("seed")),
        "Width": _int(n.get("width")),
        "Height": _int(n.get("height")),
        "Model": model,
        "VAE": _text(n.get("use_vae_model")) or None,
        "Denoising strength": _number(n.get("prompt_strength")),
    }
    return _text(n.get("prompt")), _text(n.get("negative_prompt")), _clean(params)


# -- NovelAI -------------------------------------------------------------------------------------------------

_NOVELAI_SCHEDULES = {"karras": "Karras", "exponential": "Exponential", "native": None}


def is_novelai(chunks: Mapping[str, Any]) -> bool:
    return str(chunks.get("Software") or "").strip() == "NovelAI" and "Comment" in chunks


def novelai_fields(chunks: Mapping[str, Any]) -> Fields:
    """NovelAI's PNG chunks (or the same keys as one JSON object): Description, Source, and Comment (JSON)."""
    comment = chunks.get("Comment")
    if isinstance(comment, str):
        comment = json_value(comment)
    c: Mapping[str, Any] = comment if isinstance(comment, Mapping) else {}
    source = _text(chunks.get("Source")) or ""
    model = _NOVELAI_SOURCE_RE.fullmatch(source.strip()) if len(source) < 200 else None
    schedule = _text(c.get("noise_schedule"))
    params = {
        "Steps": _int(c.get("steps")),
        "Sampler": _sampler(c.get("sampler")),
        "Schedule type": _NOVELAI_SCHEDULES.get(schedule, schedule) if schedule else None,
        "CFG scale": _number(c.get("scale")),
        "Seed": _int(c.get("seed")),
        "Width": _int(c.get("width")),
        "Height": _int(c.get("height")),
        "Model hash": model[2] if model else None,
        "Model": model[1] if model else (source or None),
        "Denoising strength": _number(c.get("strength")),
        "CFG rescale": _number(c.get("cfg_rescale")),
    }
    prompt = _text(c.get("prompt")) or _v4_caption(c.get("v4_prompt")) or _text(chunks.get("Description"))
    return prompt, _text(c.get("uc")) or _v4_caption(c.get("v4_negative_prompt")), _clean(params)


def _v4_caption(value: Any) -> str | None:
    """NovelAI V4's structured prompt: {"caption": {"base_caption": ..., "char_captions": [...]}}."""
    caption = value.get("caption") if isinstance(value, Mapping) else None
    if not isinstance(caption, Mapping) or not isinstance(caption.get("base_caption"), str):
        return None
    chars = caption.get("char_captions")
    parts = [caption["base_caption"]]
    for char in chars if isinstance(chars, list) else ():
        if isinstance(char, Mapping) and isinstance(char.get("char_caption"), str) and char["char_caption"]:
            parts.append(char["char_caption"])
    return " | ".join(part for part in parts if part) or None


# -- legacy InvokeAI -----------------------------------------------------------------------------------------

_BRACKETS_RE = re.compile(r"\[([^\[\]]*)\]")


def _split_invokeai_prompt(text: str) -> tuple[str, str]:
    """InvokeAI 1.x/2.x wrote the negative prompt inside the prompt, in [square brackets]."""
    negative = ", ".join(part.strip(" ,") for part in _BRACKETS_RE.findall(text) if part.strip(" ,"))
    positive = " ".join(_BRACKETS_RE.sub(" ", text).split()).strip(" ,")
    return positive, negative


def invokeai_sd_metadata_fields(meta: Mapping[str, Any]) -> Fields:
    """InvokeAI 2.x's `sd-metadata` JSON."""
    image = meta.get("image")
    i: Mapping[str, Any] = image if isinstance(image, Mapping) else {}
    prompt = i.get("prompt")
    if isinstance(prompt, list):  # [{"prompt": ..., "weight": ...}, ...]
        prompt = " ".join(
            p["prompt"] for p in prompt if isinstance(p, Mapping) and isinstance(p.get("prompt"), str)
        )
    positive, negative = _split_invokeai_prompt(prompt) if isinstance(prompt, str) else (None, None)
    params = {
        "Steps": _int(i.get("steps")),
        "Sampler": _sampler(i.get("sampler")),
        "CFG scale": _number(i.get("cfg_scale")),
        "Seed": _int(i.get("seed")),
        "Width": _int(i.get("width")),
        "Height": _int(i.get("height")),
        "Model hash": _text(meta.get("model_hash")),
        "Model": _text(meta.get("model_weights")),
        "Denoising strength": _number(i.get("strength")),
        "RNG": "CPU",
        "Version": f"InvokeAI {meta['app_version']}" if isinstance(meta.get("app_version"), str) else None,
    }
    return positive, negative, _clean(params)


_DREAM_OPTION_RE = re.compile(r"(?:^|\s)-(\w+)\s+((?!-[A-Za-z])\S+)")
_DREAM_KEYS = {"s": "Steps", "S": "Seed", "W": "Width", "H": "Height", "C": "CFG scale", "A": "Sampler"}


def invokeai_dream_fields(dream: str) -> Fields:
    """InvokeAI 1.x's `Dream` text: the command line, `"prompt [negative]" -s 50 -S 42 -W 512 ...`."""
    text = dream.strip()
    if text.startswith('"') and (end := text.rfind('"')) > 0:
        prompt, options = text[1:end], text[end + 1 :]
    else:
        prompt, options = "", text
    params: dict[str, Any] = {}
    for key, value in _DREAM_OPTION_RE.findall(options):
        name = _DREAM_KEYS.get(key) or ("Denoising strength" if key == "f" else None)
        if name == "Sampler":
            params[name] = _sampler(value)
        elif name in ("CFG scale", "Denoising strength"):
            params[name] = _number(value)
        elif name is not None:
            params[name] = _int(value)
    params["RNG"] = "CPU"
    positive, negative = _split_invokeai_prompt(prompt)
    return positive, negative, _clean(params)


# -- Stability Matrix ----------------------------------------------------------------------------------------


def stability_matrix_fields(p: Mapping[str, Any]) -> Fields:
    """Stability Matrix's `parameters-json` chunk (its inference UI renders through ComfyUI)."""
    params = {
        "Steps": _int(p.get("Steps")),
        "Sampler": _sampler(p.get("Sampler")),
        "Schedule type": _text(p.get("Scheduler")),
        "CFG scale": _number(p.get("CfgScale")),
        "Seed": _int(p.get("Seed")),
        "Width": _int(p.get("Width")),
        "Height": _int(p.get("Height")),
        "Model hash": _text(p.get("ModelHash")),
        "Model": _text(p.get("ModelName")),
        "Denoising strength": _number(p.get("Denoise")) if _number(p.get("Denoise")) != 1 else None,
        "RNG": "CPU",
    }
    return _text(p.get("PositivePrompt")), _text(p.get("NegativePrompt")), _clean(params)


# -- Draw Things ---------------------------------------------------------------------------------------------


def drawthings_json(xmp: str) -> dict[str, Any] | None:
    """Draw Things writes its parameters as JSON in the XMP packet's exif:UserComment."""
    start = xmp.find("<exif:UserComment")
    end = xmp.find("</exif:UserComment>", start)
    if start < 0 or end < 0:
        return None
    inner = xmp[start:end]
    item = inner.find("<rdf:li")
    if item >= 0:
        inner = inner[inner.find(">", item) + 1 :]
        inner = inner[: inner.find("</rdf:li>")] if "</rdf:li>" in inner else inner
    else:
        inner = inner[inner.find(">") + 1 :]
    data = json_value(html.unescape(inner.strip()))
    return data if isinstance(data, dict) and ("c" in data or "sampler" in data) else None


def drawthings_fields(d: Mapping[str, Any]) -> Fields:
    width, height = _size(d.get("size"))
    params = {
        "Steps": _int(d.get("steps")),
        "Sampler": _text(d.get("sampler")),  # A1111-style names: "DPM++ 2M Karras"
        "CFG scale": _number(d.get("scale")),
        "Seed": _int(d.get("seed")),
        "Width": width,
        "Height": height,
        "Model": _text(d.get("model")),
        "Denoising strength": _number(d.get("strength")) if _number(d.get("strength")) != 1 else None,
    }
    return _text(d.get("c")), _text(d.get("uc")), _clean(params)


# -- what lives outside text chunks --------------------------------------------------------------------------


def exif_graph_texts(ifd0: Mapping[int, Any]) -> dict[str, str]:
    """ComfyUI's WebP (and JPEG) files: IFD0 text tags with "prompt:{...}" (Model) and "workflow:{...}"."""
    found: dict[str, str] = {}
    for value in ifd0.values():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and (match := _EXIF_GRAPH_RE.match(value)):
            found.setdefault(match[1], value[match.end() :].rstrip("\0"))
    return found


def _bits_to_bytes(bits: bytes) -> bytes:
    usable = len(bits) // 8 * 8
    return int(bits[:usable], 2).to_bytes(usable // 8, "big") if usable else b""


def stealth_text(im: Image.Image) -> tuple[str, str] | None:
    """The "stealth" metadata of NovelAI and A1111's stealth-pnginfo extension: the least significant bit of
    each pixel's alpha (or of R, G and B), column by column: a signature, the payload's length in bits (32
    bits), then the payload (gzip for the *comp signatures). Returns (signature, text) or None."""
    if im.width * im.height > _STEALTH_MAX_PIXELS or im.mode not in ("RGBA", "RGB", "LA", "P"):
        return None
    # Only the first 40 pixels (in column order) are read before the signature is known.
    columns = im.transpose(Image.Transpose.TRANSPOSE)  # rows of the result are the columns of the image
    candidates = []
    if "A" in im.getbands() or im.mode == "P" and "transparency" in im.info:
        candidates.append(("png", columns.convert("RGBA").getchannel("A").tobytes()))
    candidates.append(("rgb", columns.convert("RGB").tobytes()))
    for kind, samples in candidates:
        bits = samples[:152].translate(_LSB)
        head = _bits_to_bytes(bits[:120]).decode("latin-1")
        if head not in (f"stealth_{kind}info", f"stealth_{kind}comp") or len(bits) < 152:
            continue
        length = int(bits[120:152], 2)
        payload = _bits_to_bytes(samples[152 : 152 + length].translate(_LSB))
        if head.endswith("comp"):
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip
            try:
                payload = decompressor.decompress(payload, _STEALTH_MAX_BYTES)
            except zlib.error:
                return None
        return head, payload.decode("utf-8", "replace").strip("\0").strip()
    return None
