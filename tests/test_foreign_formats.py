"""Reading other tools' images: SwarmUI, Fooocus, NovelAI (chunks, WebP, stealth alpha), legacy InvokeAI,
Stability Matrix, Easy Diffusion, ComfyUI in WebP EXIF; and text that is not A1111 infotext is not A1111."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdcli.images import foreign_formats as ff
from sdcli.images.metadata import read_metadata, record_for_remake

A1111 = "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64"


def _png(tmp_path: Path, chunks: dict[str, str | bytes], name: str = "x.png", mode: str = "RGB") -> Path:
    info = PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    path = tmp_path / name
    Image.new(mode, (8, 8)).save(path, pnginfo=info)
    return path


def _exif_image(tmp_path: Path, fmt: str, tags: dict[int, Any], comment: bytes | None = None) -> Path:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[tag] = value
    if comment is not None:
        exif.get_ifd(0x8769)[0x9286] = comment
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (8, 8)).save(path, fmt, exif=exif.tobytes())
    return path


def _unicode_comment(text: str) -> bytes:
    return b"UNICODE\0" + text.encode("utf-16-be")


# -- 4. only infotext is A1111 -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("comment", ["Screenshot", "Created with GIMP", "a: 1, b: 2"])
def test_a_comment_that_is_not_infotext_is_no_source(tmp_path: Path, fmt: str, comment: str) -> None:
    meta = read_metadata(_exif_image(tmp_path, fmt, {}, _unicode_comment(comment)))
    assert (meta.source, meta.prompt, meta.parameters) == (None, None, {})
    assert meta.raw["parameters"] == comment


def test_unknown_json_parameters_are_no_source(tmp_path: Path) -> None:
    meta = read_metadata(_png(tmp_path, {"parameters": json.dumps({"Steps": "20, Sampler: x, Seed: 1"})}))
    assert meta.source is None and meta.warnings == []


def test_comfyui_graph_wins_over_junk_parameters(tmp_path: Path) -> None:
    graph = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 8, "steps": 12, "positive": ["6", 0]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle"}},
    }
    meta = read_metadata(_png(tmp_path, {"parameters": "Made with ComfyUI", "prompt": json.dumps(graph)}))
    assert (meta.source, meta.prompt, meta.parameters["Steps"]) == ("comfyui", "a castle", 12)


# -- 5. other tools ------------------------------------------------------------------------------------------

SWARM = {
    "sui_image_params": {
        "prompt": "a lighthouse at dusk",
        "negativeprompt": "fog",
        "model": "Flux/flux1-dev-fp8",
        "seed": 305223794,
        "steps": 25,
        "cfgscale": 3.5,
        "width": 1024,
        "height": 768,
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "clipstopatlayer": -2,
        "swarm_version": "0.9.1.1",
    },
    "sui_extra_data": {"date": "2024-08-07"},
}


def _check_swarm(meta: Any) -> None:
    assert (meta.source, meta.prompt, meta.negative) == ("swarmui", "a lighthouse at dusk", "fog")
    p = meta.parameters
    assert (p["Steps"], p["CFG scale"], p["Seed"], p["Width"], p["Height"]) == (25, 3.5, 305223794, 1024, 768)
    assert (p["Model"], p["Clip skip"], p["Version"]) == ("Flux/flux1-dev-fp8", 2, "SwarmUI 0.9.1.1")
    record = record_for_remake(meta)
    assert (record["sampler"], record["schedule"], record["clip_skip"]) == ("DPM++ 2M", "Karras", 2)
    assert record["model"] == "Flux/flux1-dev-fp8" and record["rng"] == "cpu"


def test_swarmui_png(tmp_path: Path) -> None:
    _check_swarm(read_metadata(_png(tmp_path, {"parameters": json.dumps(SWARM)})))
    _check_swarm(read_metadata(_png(tmp_path, {"sui_image_params": json.dumps(SWARM["sui_image_params"])})))


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_swarmui_exif(tmp_path: Path, fmt: str) -> None:
    _check_swarm(read_metadata(_exif_image(tmp_path, fmt, {}, _unicode_comment(json.dumps(SWARM)))))


FOOOCUS = {
    "adm_guidance": "(1.5, 0.8, 0.3)",
    "base_model": "juggernautXL_v8Rundiffusion",
    "base_model_hash": "aeb7e9e689",
    "guidance_scale": 4,
    "loras": [["sd_xl_offset_example-lora_1.0.safetensors", 0.1, "4852686128"]],
    "metadata_scheme": "fooocus",
    "negative_prompt": "unrealistic",
    "performance": "Speed",
    "prompt": "a red fox",
    "resolution": "(1152, 896)",
    "sampler": "dpmpp_2m_sde_gpu",
    "scheduler": "karras",
    "seed": "1234567",
    "sharpness": 2,
    "steps": 30,
    "styles": "['Fooocus V2']",
    "version": "Fooocus v2.5.5",
}


def test_fooocus_json(tmp_path: Path) -> None:
    meta = read_metadata(_png(tmp_path, {"parameters": json.dumps(FOOOCUS), "fooocus_scheme": "fooocus"}))
    assert (meta.source, meta.prompt, meta.negative) == ("fooocus", "a red fox", "unrealistic")
    p = meta.parameters
    assert (p["Width"], p["Height"], p["Seed"], p["Steps"], p["CFG scale"]) == (1152, 896, 1234567, 30, 4)
    assert (p["Model"], p["Model hash"], p["Version"]) == (
        "juggernautXL_v8Rundiffusion",
        "aeb7e9e689",
        "Fooocus v2.5.5",
    )
    record = record_for_remake(meta)
    assert (record["sampler"], record["schedule"], record["model_hash"]) == (
        "DPM++ 2M SDE",
        "Karras",
        "aeb7e9e689",
    )


def test_fooocus_fork_with_title_case_keys(tmp_path: Path) -> None:
    data = {
        "Prompt": "a boat",
        "Negative Prompt": "",
        "Fooocus V2 Expansion": "x",
        "Guidance Scale": 7,
        "Resolution": "(1024, 1024)",
        "Sampler": "euler",
        "Seed": 3,
        "Base Model": "sdxl.safetensors",
    }
    meta = read_metadata(_png(tmp_path, {"parameters": json.dumps(data)}))
    assert (meta.source, meta.prompt, meta.parameters["Width"], meta.parameters["Seed"]) == (
        "fooocus",
        "a boat",
        1024,
        3,
    )


def test_fooocus_a1111_scheme(tmp_path: Path) -> None:
    text = A1111 + ", Version: Fooocus v2.5.5"
    meta = read_metadata(_png(tmp_path, {"parameters": text, "fooocus_scheme": "a1111"}))
    assert (meta.source, meta.prompt, meta.negative, meta.parameters["Seed"]) == (
        "fooocus",
        "a cat",
        "blurry",
        5,
    )


def test_ruinedfooocus(tmp_path: Path) -> None:
    data = {
        "Prompt": "a tree",
        "Negative": "snow",
        "steps": 30,
        "cfg": 6.0,
        "width": 896,
        "height": 1152,
        "seed": 42,
        "sampler_name": "dpmpp_2m_sde_gpu",
        "scheduler": "karras",
        "base_model_name": "sd_xl_base_1.0.safetensors",
        "software": "RuinedFooocus",
    }
    meta = read_metadata(_png(tmp_path, {"parameters": json.dumps(data)}))
    assert (meta.source, meta.prompt, meta.negative) == ("ruinedfooocus", "a tree", "snow")
    assert record_for_remake(meta)["model"] == "sd_xl_base_1.0" and meta.parameters["Width"] == 896


def test_easydiffusion(tmp_path: Path) -> None:
    data = {
        "prompt": "a cup",
        "negative_prompt": "",
        "seed": 9,
        "use_stable_diffusion_model": "sd-v1-4",
        "num_inference_steps": 25,
        "guidance_scale": 7.5,
        "width": 512,
        "height": 512,
        "sampler_name": "euler_a",
    }
    meta = read_metadata(_exif_image(tmp_path, "JPEG", {}, _unicode_comment(json.dumps(data))))
    assert (meta.source, meta.prompt, meta.parameters["Steps"]) == ("easydiffusion", "a cup", 25)
    assert record_for_remake(meta)["sampler"] == "Euler a"


NOVELAI_COMMENT = {
    "prompt": "1girl, library",
    "steps": 28,
    "height": 1216,
    "width": 832,
    "scale": 5.0,
    "uncond_scale": 1.0,
    "cfg_rescale": 0.0,
    "seed": 2210147329,
    "n_samples": 1,
    "noise_schedule": "karras",
    "sampler": "k_dpmpp_2m",
    "uc": "lowres, bad hands",
}
NOVELAI = {
    "Title": "NovelAI generated image",
    "Description": "1girl, library",
    "Software": "NovelAI",
    "Source": "NovelAI Diffusion V4.5 4BDE2A90",
    "Generation time": "6.1",
    "Comment": json.dumps(NOVELAI_COMMENT),
}


def _check_novelai(meta: Any) -> None:
    assert (meta.source, meta.prompt, meta.negative) == ("novelai", "1girl, library", "lowres, bad hands")
    p = meta.parameters
    assert (p["Steps"], p["CFG scale"], p["Seed"], p["Width"], p["Height"]) == (
        28,
        5.0,
        2210147329,
        832,
        1216,
    )
    assert (p["Model"], p["Model hash"], p["Sampler"]) == (
        "NovelAI Diffusion V4.5",
        "4BDE2A90",
        "dpmpp_2m",
    )
    record = record_for_remake(meta)
    assert (record["sampler"], record["schedule"]) == ("DPM++ 2M", "Karras")


def test_novelai_png(tmp_path: Path) -> None:
    _check_novelai(read_metadata(_png(tmp_path, NOVELAI)))


def test_novelai_webp(tmp_path: Path) -> None:
    # NovelAI's WebP downloads: the same keys as one JSON object in the EXIF UserComment.
    _check_novelai(read_metadata(_exif_image(tmp_path, "WEBP", {}, _unicode_comment(json.dumps(NOVELAI)))))


def _stealth_png(tmp_path: Path, signature: str, payload: bytes, mode: str = "RGBA") -> Path:
    """Write `payload` as the stealth-pnginfo extension and NovelAI do: low bits, column by column."""
    bits = "".join(f"{b:08b}" for b in signature.encode()) + f"{len(payload) * 8:032b}"
    bits += "".join(f"{b:08b}" for b in payload)
    width = height = 96
    per_pixel = 1 if mode == "RGBA" else 3
    assert len(bits) <= width * height * per_pixel
    rng = random.Random(0)
    samples = bytearray(rng.randrange(256) for _ in range(width * height * per_pixel))  # column-major
    for i, bit in enumerate(bits):
        samples[i] = (samples[i] & 0xFE) | int(bit)
    band_mode = "L" if mode == "RGBA" else "RGB"
    columns = Image.frombytes(band_mode, (height, width), bytes(samples))
    low_bits = columns.transpose(Image.Transpose.TRANSPOSE)
    if mode == "RGBA":
        im = Image.new("RGB", (width, height), (10, 200, 30))
        im.putalpha(low_bits)
    else:
        im = low_bits
    path = tmp_path / f"{signature}.png"
    im.save(path)
    return path


def test_novelai_stealth_alpha(tmp_path: Path) -> None:
    payload = gzip.compress(json.dumps(NOVELAI).encode())
    meta = read_metadata(_stealth_png(tmp_path, "stealth_pngcomp", payload))
    _check_novelai(meta)
    assert "stealth_pngcomp" in meta.raw


@pytest.mark.parametrize(("signature", "mode"), [("stealth_pnginfo", "RGBA"), ("stealth_rgbinfo", "RGB")])
def test_a1111_stealth(tmp_path: Path, signature: str, mode: str) -> None:
    meta = read_metadata(_stealth_png(tmp_path, signature, A1111.encode(), mode))
    assert (meta.source, meta.prompt, meta.negative, meta.parameters["Seed"]) == (
        "a1111",
        "a cat",
        "blurry",
        5,
    )


def test_stealth_with_a_lying_length_or_bomb(tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * 20_000_000)
    assert read_metadata(_stealth_png(tmp_path, "stealth_pngcomp", bomb[:1100])).source is None
    path = _stealth_png(tmp_path, "stealth_pnginfo", b"x" * 10)
    assert read_metadata(path).source is None  # not infotext
    assert read_metadata(_png(tmp_path, {}, mode="RGBA")).source is None


def test_invokeai_sd_metadata(tmp_path: Path) -> None:
    data = {
        "model": "stable diffusion",
        "model_weights": "stable-diffusion-1.5",
        "model_hash": "cc6cb27103417325ff94f52b7a5d2dde45a7515b25c255d8e396c90014281516",
        "app_id": "invoke-ai/InvokeAI",
        "app_version": "2.3.5",
        "image": {
            "prompt": [{"prompt": "a snowy village [blurry, dark]", "weight": 1.0}],
            "steps": 50,
            "cfg_scale": 7.5,
            "height": 512,
            "width": 768,
            "seed": 3357757885,
            "sampler": "k_lms",
            "type": "txt2img",
        },
    }
    meta = read_metadata(_png(tmp_path, {"sd-metadata": json.dumps(data), "Dream": "ignored"}))
    assert (meta.source, meta.prompt, meta.negative) == ("invokeai", "a snowy village", "blurry, dark")
    assert (meta.parameters["Width"], meta.parameters["Model"]) == (768, "stable-diffusion-1.5")
    assert record_for_remake(meta)["sampler"] == "LMS"


def test_invokeai_dream(tmp_path: Path) -> None:
    dream = '"a snowy village [blurry]" -s 50 -S 3357757885 -W 512 -H 512 -C 7.5 -A k_euler_a -F'
    meta = read_metadata(_png(tmp_path, {"Dream": dream}))
    assert (meta.source, meta.prompt, meta.negative) == ("invokeai", "a snowy village", "blurry")
    p = meta.parameters
    assert (p["Steps"], p["Seed"], p["Width"], p["CFG scale"], p["Sampler"]) == (
        50,
        3357757885,
        512,
        7.5,
        "euler_a",
    )


@pytest.mark.parametrize("fmt", ["WEBP", "JPEG"])
def test_comfyui_in_exif(tmp_path: Path, fmt: str) -> None:
    graph = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 8, "steps": 12, "positive": ["6", 0], "cfg": 6.5}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle"}},
    }
    tags = {0x0110: "prompt:" + json.dumps(graph), 0x010F: "workflow:" + json.dumps({"nodes": []})}
    meta = read_metadata(_exif_image(tmp_path, fmt, tags))
    assert (meta.source, meta.prompt, meta.parameters["CFG scale"]) == ("comfyui", "a castle", 6.5)
    assert json.loads(meta.raw["workflow"]) == {"nodes": []}


def test_stability_matrix(tmp_path: Path) -> None:
    data = {
        "PositivePrompt": "一只狐狸, fox",
        "NegativePrompt": "blurry",
        "Width": 1024,
        "Height": 1024,
        "Seed": 77,
        "Steps": 30,
        "CfgScale": 7.0,
        "Sampler": "dpmpp_2m",
        "Scheduler": "karras",
        "ModelName": "sdxl/juggernautXL.safetensors",
        "ModelHash": "abc",
    }
    text = (
        "一只狐狸, fox\nNegative prompt: blurry\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 77"
    )
    chunks: dict[str, str | bytes] = {
        "parameters-json": json.dumps(data),
        "parameters": text.encode(),
        "smproj": "{}",
    }
    meta = read_metadata(_png(tmp_path, chunks))
    assert (meta.source, meta.prompt, meta.negative) == ("stability-matrix", "一只狐狸, fox", "blurry")
    assert meta.raw["parameters"] == text  # UTF-8 in a tEXt chunk reads as UTF-8
    record = record_for_remake(meta)
    assert (record["sampler"], record["schedule"], record["model"]) == ("DPM++ 2M", "Karras", "juggernautXL")


def test_utf8_in_text_chunk(tmp_path: Path) -> None:
    text = "一只狐狸 🦊, café\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5"
    meta = read_metadata(_png(tmp_path, {"parameters": text.encode()}))
    assert (meta.source, meta.prompt) == ("a1111", "一只狐狸 🦊, café")
    latin1 = read_metadata(_png(tmp_path, {"parameters": "café\nSteps: 1, Seed: 2, Sampler: x"}, "l.png"))
    assert latin1.prompt == "café"


# -- odd data never crashes a reader -------------------------------------------------------------------------


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**70, 7, 1.5, float("inf")])
    if kind in (2, 3, 4):
        return rng.choice(["", "x", "-s 5", "(1, 2)", "k_euler", "[a]", "NovelAI", "fooocus", "9" * 50])
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(3))]
    keys = [
        "prompt",
        "Comment",
        "Software",
        "sui_image_params",
        "image",
        "steps",
        "seed",
        "resolution",
        "metadata_scheme",
        "version",
        "software",
        "Source",
        "sampler",
        "width",
        "Steps",
        "PositivePrompt",
    ]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def test_readers_survive_random_json() -> None:
    rng = random.Random(5)
    readers = [
        ff.swarmui_fields,
        ff.fooocus_fields,
        ff.ruinedfooocus_fields,
        ff.easydiffusion_fields,
        ff.novelai_fields,
        ff.invokeai_sd_metadata_fields,
        ff.stability_matrix_fields,
    ]
    for _ in range(3000):
        data = _random_json(rng)
        if not isinstance(data, dict):
            continue
        ff.from_parameters_json(data)
        for reader in readers:
            prompt, negative, params = reader(data)
            assert all(isinstance(v, str | int | float) for v in params.values())
    for text in ['"x', '"a" -s', "-s -S 5", '"" -W 9' * 1000, "[" * 10_000]:
        ff.invokeai_dream_fields(text)


def test_readme_documents_every_source_and_key() -> None:
    import dataclasses

    from sdcli.images.metadata import ImageMetadata

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## info") : readme.index("## Exit codes")]
    sources = ["sdcli", "a1111", "comfyui", "invokeai", "swarmui", "fooocus", "ruinedfooocus"]
    sources += ["easydiffusion", "novelai", "stability-matrix", "drawthings"]
    for key in [*sources, *(f.name for f in dataclasses.fields(ImageMetadata))]:
        assert f"`{key}`" in section, key


def test_jpeg_com_segment(tmp_path: Path) -> None:
    path = tmp_path / "c.jpg"
    Image.new("RGB", (8, 8)).save(path, "JPEG", comment=A1111.encode())
    meta = read_metadata(path)
    assert (meta.source, meta.prompt, meta.parameters["Seed"]) == ("a1111", "a cat", 5)
    Image.new("RGB", (8, 8)).save(path, "JPEG", comment=b"Created with GIMP")
    assert read_metadata(path).source is None


DRAW_THINGS = {
    "c": "a koi pond, <b>ink</b>",
    "uc": "blurry",
    "seed": 1234,
    "steps": 20,
    "scale": 5.5,
    "sampler": "DPM++ 2M Karras",
    "model": "sd_xl_base_1.0_f16.ckpt",
    "size": "1024x768",
    "strength": 1,
}


def _xmp(data: dict) -> str:
    from xml.sax.saxutils import escape

    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/">'
        f'<exif:UserComment><rdf:Alt><rdf:li xml:lang="x-default">{escape(json.dumps(data))}</rdf:li>'
        "</rdf:Alt></exif:UserComment></rdf:Description></rdf:RDF></x:xmpmeta>"
    )


def _check_drawthings(meta: Any) -> None:
    assert (meta.source, meta.prompt, meta.negative) == ("drawthings", "a koi pond, <b>ink</b>", "blurry")
    assert (meta.parameters["Width"], meta.parameters["Height"], meta.parameters["Steps"]) == (1024, 768, 20)
    record = record_for_remake(meta)
    assert (record["sampler"], record["schedule"], record["model"]) == (
        "DPM++ 2M",
        "Karras",
        "sd_xl_base_1.0_f16",
    )


def test_drawthings_png(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", _xmp(DRAW_THINGS))
    path = tmp_path / "d.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    _check_drawthings(read_metadata(path))


def test_drawthings_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "d.jpg"
    Image.new("RGB", (8, 8)).save(path, "JPEG", xmp=_xmp(DRAW_THINGS).encode())
    _check_drawthings(read_metadata(path))
    assert ff.drawthings_json("<exif:UserComment" * 10_000) is None


@pytest.mark.parametrize(
    "chunks",
    [
        {
            "prompt": "a cup",
            "negative_prompt": "",
            "seed": "9",
            "use_stable_diffusion_model": "sd-v1-4",
            "num_inference_steps": "25",
            "guidance_scale": "7.5",
            "width": "512",
            "height": "512",
            "sampler_name": "euler_a",
        },
        {
            "Prompt": "a cup",
            "Negative Prompt": "",
            "Seed": "9",
            "Stable Diffusion model": "sd-v1-4",
            "Steps": "25",
            "Guidance Scale": "7.5",
            "Width": "512",
            "Height": "512",
            "Sampler": "euler_a",
        },
    ],
    ids=["snake-case", "title-case"],
)
def test_easydiffusion_png_chunks(tmp_path: Path, chunks: dict[str, str]) -> None:
    meta = read_metadata(_png(tmp_path, dict(chunks)))
    assert (meta.source, meta.prompt, meta.negative) == ("easydiffusion", "a cup", "")
    p = meta.parameters
    assert (p["Steps"], p["Seed"], p["CFG scale"], p["Width"], p["Model"]) == (25, 9, 7.5, 512, "sd-v1-4")
    assert record_for_remake(meta)["sampler"] == "Euler a"


def test_fooocus_json_known_by_its_scheme_chunk(tmp_path: Path) -> None:
    data = {"prompt": "a red fox", "steps": 30, "seed": 5}
    meta = read_metadata(_png(tmp_path, {"parameters": json.dumps(data), "fooocus_scheme": "fooocus"}))
    assert (meta.source, meta.prompt, meta.parameters["Steps"]) == ("fooocus", "a red fox", 30)


def test_novelai_v4_structured_prompt(tmp_path: Path) -> None:
    comment = {
        "steps": 23,
        "seed": 1,
        "sampler": "k_euler",
        "v4_prompt": {
            "caption": {"base_caption": "2girls, park", "char_captions": [{"char_caption": "girl, red"}]}
        },
        "v4_negative_prompt": {"caption": {"base_caption": "lowres", "char_captions": []}},
    }
    chunks = {
        "Software": "NovelAI",
        "Source": "NovelAI Diffusion V4 F6302A9D",
        "Comment": json.dumps(comment),
    }
    meta = read_metadata(_png(tmp_path, chunks))
    assert (meta.source, meta.prompt, meta.negative) == ("novelai", "2girls, park | girl, red", "lowres")
