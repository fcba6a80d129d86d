"""`--from IMAGE`: the parameters stored in an image become the defaults, and the command line wins."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import replace
from pathlib import Path
from typing import Any

from sdcli.core import ip_adapter_specs
from sdcli.core.image_args import ImageArgs
from sdcli.core.requests import HIRES_UPSCALERS
from sdcli.errors import UsageError
from sdcli.images import metadata, upscale
from sdcli.images.record_shape import is_int, is_number

# ImageArgs field -> sdcli record key. Device and dtype are not taken: they describe the machine, and
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
    "hires_scale": "hires_scale",
    "hires_steps": "hires_steps",
    "hires_strength": "hires_strength",
    "hires_upscaler": "hires_upscaler",
    "refiner": "refiner",
    "refiner_switch": "refiner_switch",
}
HIRES = ("hires_scale", "hires_steps", "hires_strength", "hires_upscaler")  # generate's options only


def read_record_and_warnings(image: Path) -> tuple[dict[str, Any], list[str]]:
    """The record, and what in the image was unusable (an sdcli chunk of the wrong shape, say)."""
    meta = metadata.read_metadata(image)
    return metadata.record_for_remake(meta), [*meta.warnings, *_postprocessing_warning(meta)]


def _postprocessing_warning(meta: metadata.ImageMetadata) -> list[str]:
    """An upscaled image (sdcli upscale, A1111's Extras) re-makes the image it was upscaled from: the
    parameters are that image's, and the upscale is not part of generating it."""
    text = meta.raw.get("postprocessing")
    if not text:
        return []
    return [
        f"it was upscaled after it was made ({text[:120]}), so --from re-makes the image before the upscale"
    ]


def stored_values(record: dict[str, Any], given: Set[str]) -> dict[str, Any]:
    """Each stored parameter the user did not give, by ImageArgs field name."""
    found = {
        param: record[key]
        for param, key in STORED.items()
        if param not in given and record.get(key) is not None
    }
    if "model" not in given and "revision" not in given:
        revision = record.get("commit") or record.get("revision")
        if revision is not None:
            found["revision"] = revision
    return found


def scheduler_state(record: dict[str, Any], given: Set[str]) -> tuple[str, dict[str, Any]] | None:
    """The exact scheduler class and config an sdcli image used, unless the user picked another."""
    stored = record.get("scheduler")
    if {"scheduler", "schedule"} & given or not isinstance(stored, dict):
        return None
    if not isinstance(stored.get("class"), str) or not isinstance(stored.get("config"), dict):
        return None
    return stored["class"], stored["config"]


def apply(args: ImageArgs) -> tuple[ImageArgs, list[str]]:
    """With --from IMAGE: the image's stored parameters replace every field the command line did not give.
    Also what in the image was unusable (and so ignored), for a warning."""
    if args.from_ is None:
        return args, []
    if not args.from_.is_file():
        raise UsageError(f"{args.from_}: no such file")
    record, warnings = read_record_and_warnings(args.from_)
    changes = stored_values(record, args.given)
    if args.strength is None:  # a command without --strength (generate) takes none from the image
        changes.pop("strength", None)
        _find_hires_upscaler(changes)
    else:  # img2img and inpaint have no hires fix: they take the size it made, not its first pass's
        scale = changes.get("hires_scale")
        for name in HIRES:
            changes.pop(name, None)
        if scale is not None and is_number(scale) and scale > 1:
            for name in ("width", "height"):
                if is_int(changes.get(name)):
                    changes[name] = int(changes[name] * scale) // 8 * 8
    state = scheduler_state(record, args.given)
    ip_changes, ip_warnings = _ip_adapters(record, args)
    changes.update(ip_changes)
    warnings = [*warnings, *_controlnet_warning(record, args), *ip_warnings, *_find_refiner(changes)]
    # What the image stored is a given value, not a default a model family may replace.
    remade = replace(args, **changes, scheduler_state=state, defaulted=args.defaulted - changes.keys())
    return remade, warnings


def _controlnet_warning(record: dict[str, Any], args: ImageArgs) -> list[str]:
    """ControlNets, like LoRAs, are recorded but not reused (their files may be anywhere): say so when the
    image had some and the command line gives none, rather than drop them silently."""
    stored = record.get("controlnets")
    if args.controlnet or not isinstance(stored, list) or not stored:
        return []
    names = ", ".join(str(item.get("name")) for item in stored if isinstance(item, dict))
    return [f"it was made with ControlNet {names}, which --from does not reuse: pass --controlnet again"]


def _ip_adapters(record: dict[str, Any], args: ImageArgs) -> tuple[dict[str, Any], list[str]]:
    """The image's IP-Adapters and scales, as far as they can be used again. The reference image is only
    recorded by name and hash, so it must be given again (--ip-image). An adapter from the Hub is reused by
    its recorded path; a local one must be named again, and takes its stored scale when given without one."""
    found = record.get("ip_adapters")
    stored = [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []
    if not stored:
        return {}, []
    scales = [item.get("scale") if is_number(item.get("scale")) else 1.0 for item in stored]
    if args.ip_adapter:
        texts = []
        for i, text in enumerate(args.ip_adapter):
            bare = ip_adapter_specs.IPAdapterSpec.parse(text, Path()).source == text
            if bare and i < len(stored) and stored[i].get("name") == Path(text).stem:
                text = f"{text}:{scales[i]!r}"
            texts.append(text)
        return {"ip_adapter": tuple(texts)}, []
    names = ", ".join(
        f"{item.get('name')} at scale {scale:g}" for item, scale in zip(stored, scales, strict=True)
    )
    sources = [item.get("source") for item in stored]
    reusable = all(isinstance(s, str) and not ip_adapter_specs.is_local(s) for s in sources)
    if reusable and len(args.ip_image) == len(stored):
        changes: dict[str, Any] = {
            "ip_adapter": tuple(f"{s}:{scale!r}" for s, scale in zip(sources, scales, strict=True))
        }
        encoder = stored[0].get("image_encoder")  # a Hub folder --ip-image-encoder named (one for all)
        if (
            args.ip_image_encoder is None
            and isinstance(encoder, str)
            and not ip_adapter_specs.is_local(encoder)
        ):
            changes["ip_image_encoder"] = encoder
        return changes, []
    if reusable:
        return {}, [
            f"it was made with IP-Adapter {names}, whose reference image is not stored: "
            "pass --ip-image IMAGE to use it again"
        ]
    return {}, [
        f"it was made with IP-Adapter {names}, which --from does not reuse (a local file): "
        "pass --ip-adapter FILE --ip-image IMAGE again"
    ]


def _find_hires_upscaler(changes: dict[str, Any]) -> None:
    """An upscaler model the record names (a Hub id, or a local folder's or weights file's own name) is
    loaded as a Hub id, or looked for in the working folder. One not found is refused: unlike a refiner or a
    ControlNet, dropping it (or putting Lanczos in its place) would quietly make another image, or one of
    another size, under the name of a remake."""
    name = changes.get("hires_upscaler")
    if name is None or str(name) in HIRES_UPSCALERS or changes.get("hires_scale") is None:
        return
    found = upscale.find_by_name(str(name))
    if found is None:
        raise UsageError(
            f"it was made with the hires upscaler {str(name)[:120]}, which --from cannot find here",
            hint="pass --hires-upscaler FILE|FOLDER|HUB_ID (or lanczos, or latent) again",
        )
    changes["hires_upscaler"] = found


def _find_refiner(changes: dict[str, Any]) -> list[str]:
    """The record names the refiner as metadata names models (a Hub id, or a local folder's or file's own
    name): a Hub id is loaded as such, a name is looked for in the working folder. One not found is dropped
    with a warning, as ControlNets are, rather than failing the whole remake."""
    from sdcli.model.sources import HUB_ID

    name = changes.get("refiner")
    if name is None:
        return []
    name = str(name)
    # Only below the working folder: a record holds names, and one naming a path elsewhere is not sdcli's.
    local = not Path(name).is_absolute() and ".." not in Path(name).parts
    for candidate in (name, f"{name}.safetensors") if local else ():
        if Path(candidate).exists():
            changes["refiner"] = f"./{candidate}"
            return []
    if "/" in name and HUB_ID.match(name):
        return []
    changes.pop("refiner")
    changes.pop("refiner_switch", None)
    return [f"it was made with the refiner {name}, which --from cannot find here: pass --refiner again"]
