"""Generation parameters written by ComfyUI and InvokeAI, turned into A1111-style keys.

Both return (prompt, negative, params) where params use A1111's key names (Steps, Sampler, CFG scale, Seed,
Width, Height, Model, ...) so that one code path (`metadata.record_from_a1111`) re-makes every kind of image.
Values stay as the tool wrote them ("euler_ancestral", "karras"); `schedulers.resolve` knows those spellings.
Both readers tolerate missing or odd pieces: a workflow graph is user data, not a schema.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

Value = str | int | float
Fields = tuple[str | None, str | None, dict[str, Value]]

_COMFY_SAMPLERS = ("KSampler", "KSamplerAdvanced")
_SCALAR_INPUTS = ("value", "string", "text", "seed", "int", "float", "number")
_MAX_NODES = 64  # enough for real graphs, and a bound on hostile ones


def _scalar(value: Any) -> Value | None:
    return value if isinstance(value, str | int | float) and not isinstance(value, bool) else None


def _is_link(value: Any) -> bool:
    # API-format graphs link inputs as [source node id, output slot].
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and isinstance(value[1], int)
    )


def _inputs(node: Any) -> dict[str, Any]:
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def _search(nodes: Mapping[str, Any], start: Any, accept: Callable[[Any], Any]) -> Any:
    """Breadth-first up the graph from a link until `accept(node)` returns something."""
    queue, seen = deque([start]), set[str]()
    while queue and len(seen) < _MAX_NODES:
        link = queue.popleft()
        if not _is_link(link) or str(link[0]) in seen:
            continue
        seen.add(str(link[0]))
        node = nodes.get(str(link[0]))
        found = accept(node) if isinstance(node, dict) else None
        if found is not None:
            return found
        queue.extend(v for v in _inputs(node).values() if _is_link(v))
    return None


def _value(nodes: Mapping[str, Any], value: Any) -> Value | None:
    """An input's value, following one link to a primitive node when the graph routes it through one."""
    if not _is_link(value):
        return _scalar(value)
    inputs = _inputs(nodes.get(str(value[0])))
    return next((_scalar(inputs[k]) for k in _SCALAR_INPUTS if _scalar(inputs.get(k)) is not None), None)


def _text_node(nodes: Mapping[str, Any]) -> Callable[[Any], Any]:
    def accept(node: Any) -> Any:
        if not str(node.get("class_type", "")).startswith("CLIPTextEncode"):
            return None
        inputs = _inputs(node)
        text = _value(nodes, inputs.get("text", inputs.get("text_g")))
        return text if isinstance(text, str) else None

    return accept


def _size_node(node: Any) -> Any:
    inputs = _inputs(node)
    width, height = _scalar(inputs.get("width")), _scalar(inputs.get("height"))
    return (width, height) if isinstance(width, int) and isinstance(height, int) else None


def _model_node(node: Any) -> Any:
    inputs = _inputs(node)
    return next((inputs[k] for k in ("ckpt_name", "unet_name") if isinstance(inputs.get(k), str)), None)


def _node_order(item: tuple[str, Any]) -> tuple[int, str]:
    key = item[0]
    # isdigit() alone also accepts "²", which int() refuses; and a 5000-digit id would pass int()'s limit.
    return (int(key), key) if key.isascii() and key.isdigit() and len(key) < 18 else (1 << 62, key)


def comfyui_fields(graph: Mapping[str, Any]) -> Fields:
    """Prompt, negative and parameters of the first KSampler in a ComfyUI API graph (the `prompt` chunk)."""
    nodes = {str(k): v for k, v in graph.items() if isinstance(v, dict)}
    samplers = [
        n for _, n in sorted(nodes.items(), key=_node_order) if n.get("class_type") in _COMFY_SAMPLERS
    ]
    if not samplers:
        return None, None, {}
    inputs = _inputs(samplers[0])
    prompt = _search(nodes, inputs.get("positive"), _text_node(nodes))
    negative = _search(nodes, inputs.get("negative"), _text_node(nodes))
    size = _search(nodes, inputs.get("latent_image"), _size_node) or (None, None)
    denoise = _value(nodes, inputs.get("denoise"))
    params: dict[str, Value | None] = {
        "Steps": _value(nodes, inputs.get("steps")),
        "Sampler": _value(nodes, inputs.get("sampler_name")),
        "Schedule type": _value(nodes, inputs.get("scheduler")),
        "CFG scale": _value(nodes, inputs.get("cfg")),
        "Seed": _value(nodes, inputs.get("seed", inputs.get("noise_seed"))),
        "Width": size[0],
        "Height": size[1],
        "Model": _search(nodes, inputs.get("model"), _model_node),
        "Denoising strength": denoise if denoise != 1 else None,  # 1 is plain text-to-image
        "RNG": "CPU",  # ComfyUI makes its initial noise on the CPU
    }
    return prompt, negative, {k: v for k, v in params.items() if v is not None}


def invokeai_fields(meta: Mapping[str, Any]) -> Fields:
    """Prompt, negative and parameters from InvokeAI's `invokeai_metadata` JSON."""
    model = meta.get("model")
    if isinstance(model, dict):
        model = model.get("name") or model.get("model_name")
    clip_skip = meta.get("clip_skip")
    params: dict[str, Value | None] = {
        "Steps": _scalar(meta.get("steps")),
        "Sampler": _scalar(meta.get("scheduler")),
        "CFG scale": _scalar(meta.get("cfg_scale")),
        "Seed": _scalar(meta.get("seed")),
        "Width": _scalar(meta.get("width")),
        "Height": _scalar(meta.get("height")),
        "Model": _scalar(model),
        "Denoising strength": _scalar(meta.get("strength")),
        # InvokeAI counts skipped layers (0 = none); A1111 counts the layer used (1 = last).
        "Clip skip": clip_skip + 1 if isinstance(clip_skip, int) and clip_skip > 0 else None,
        "RNG": "CPU",  # InvokeAI makes its noise on the CPU by default
    }
    prompt, negative = meta.get("positive_prompt"), meta.get("negative_prompt")
    return (
        prompt if isinstance(prompt, str) else None,
        negative if isinstance(negative, str) else None,
        {k: v for k, v in params.items() if v is not None},
    )
