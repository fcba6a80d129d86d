"""Writing and reading generation parameters: A1111 text, PNG chunks, EXIF, ComfyUI and InvokeAI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdcli import __version__
from sdcli.errors import UsageError
from sdcli.images.metadata import (
    A1111Params,
    a1111_parameters,
    decode_user_comment,
    format_value,
    parse_a1111,
    png_info,
    read_metadata,
    record_for_remake,
    record_from_a1111,
)

V110 = (
    "masterpiece, best quality, 1girl, <lora:add_detail:0.6>\n"
    "Negative prompt: lowres, bad anatomy, (worst quality:1.4)\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 832x1216, "
    "Model hash: 31e35c80fc, Model: sd_xl_base_1.0, VAE hash: 235745af8d, VAE: sdxl_vae.safetensors, "
    "Denoising strength: 0.55, Clip skip: 2, Hires upscale: 1.5, Hires steps: 15, "
    "Hires upscaler: 4x-UltraSharp, "
    'Lora hashes: "add_detail: 7c6bad76eb54", Emphasis: Original, Version: v1.10.1'
)


def _record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "schema": 1,
        "prompt": "a red fox in the snow",
        "negative": "blurry",
        "model": "runwayml/stable-diffusion-v1-5",
        "model_hash": None,
        "pipeline": "StableDiffusionPipeline",
        "sampler": "DPM++ 2M",
        "schedule": "Karras",
        "scheduler": {"class": "DPMSolverMultistepScheduler", "config": {"use_karras_sigmas": True}},
        "steps": 25,
        "guidance": 7.5,
        "seed": 42,
        "width": 512,
        "height": 768,
        "strength": None,
        "clip_skip": None,
        "vae": None,
        "loras": [],
        "embeddings": [],
        "init_image": None,
        "dtype": "fp16",
        "device": "cuda",
        "rng": "cpu",
        "versions": {"sdcli": "0.1.0", "diffusers": "0.42.1", "transformers": "5.24", "torch": "2.13"},
    }
    record.update(changes)
    return record


def _save_png(tmp_path: Path, info: PngInfo, name: str = "out.png") -> Path:
    path = tmp_path / name
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path, pnginfo=info)
    return path


# -- format_value --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (7, "7"),
        (7.0, "7"),
        (7.5, "7.5"),
        (0.55, "0.55"),
        (-3, "-3"),
        (1e-05, "0.00001"),
        (2.0**60, "1152921504606846976"),
        (1234567890, "1234567890"),
        (True, "True"),
        ("Euler a", "Euler a"),
        ("sd_xl_base_1.0", "sd_xl_base_1.0"),
        ("a, b", '"a, b"'),
        ("key: value", '"key: value"'),
        ("two\nlines", '"two\\nlines"'),
        ("模型, 一", '"模型, 一"'),
        ('"quoted"', '"\\"quoted\\""'),
    ],
)
def test_format_value(value: Any, text: str) -> None:
    assert format_value(value) == text


# -- writing -------------------------------------------------------------------------------------------------


def test_a1111_layout() -> None:
    record = _record(
        model="dreamshaper_8",
        model_hash="879db523c3",
        vae="vae-ft-mse-840000",
        strength=0.6,
        clip_skip=2,
        init_image={"name": "in.png", "hash": "0123abcd"},
        loras=[
            {"name": "add_detail", "hash": "7c6bad76eb54", "scale": 0.6},
            {"name": "x:y,z", "hash": "abc"},
        ],
        embeddings=[{"name": "easynegative", "hash": "c74b4e810b", "token": "easynegative"}],
    )
    assert a1111_parameters(record) == (
        "a red fox in the snow <lora:add_detail:0.6> <lora:xy,z:1>\n"
        "Negative prompt: blurry\n"
        "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, Size: 512x768, "
        "Model hash: 879db523c3, Model: dreamshaper_8, VAE: vae-ft-mse-840000, Denoising strength: 0.6, "
        "Clip skip: 2, Init image hash: 0123abcd, RNG: CPU, "
        'Lora hashes: "add_detail: 7c6bad76eb54, xyz: abc", TI hashes: "easynegative: c74b4e810b", '
        "Version: sdcli 0.1.0"
    )


def test_a1111_layout_leaves_out_defaults() -> None:
    text = a1111_parameters(
        _record(negative="", sampler="Euler", schedule=None, rng="device", clip_skip=1, guidance=7.0)
    )
    assert text == (
        "a red fox in the snow\n"
        "Steps: 25, Sampler: Euler, CFG scale: 7, Seed: 42, Size: 512x768, "
        "Model: runwayml/stable-diffusion-v1-5, Version: sdcli 0.1.0"
    )
    assert text.splitlines()[-1].startswith("Steps:")


def test_a1111_layout_always_writes_the_keys_readers_need() -> None:
    text = a1111_parameters({"prompt": "x"})
    assert text.endswith(
        f"Steps: unknown, Sampler: unknown, CFG scale: unknown, Seed: unknown, Size: unknown, "
        f"Model: unknown, Version: sdcli {__version__}"
    )


# -- round trips through PNG files ---------------------------------------------------------------------------

ROUND_TRIP = {
    "ascii": _record(),
    "multi-line": _record(prompt="a fox\nin the snow\n\nwinter", negative="blurry\nlow quality"),
    "cjk-emoji": _record(prompt="一只狐狸在雪中 🦊❄️", negative="模糊, 低质量 😞", model="模型"),
    # Latin-1 whose bytes are also valid UTF-8: written so that it does not read back as "é".
    "latin1-like-utf8": _record(prompt="Ã© Ã¼ber", negative="naÃ¯ve"),
    "punctuation": _record(
        prompt='a "quoted" word, a colon: here, back\\slash \\n and (weight:1.2)',
        negative='no "quotes", no: colons \\',
        model="my,model: v2",
        vae='vae "x", \\y',
        loras=[{"name": "detail", "hash": "7c6bad76eb54", "scale": 0.5}],
    ),
}


@pytest.mark.parametrize("case", list(ROUND_TRIP))
def test_png_round_trip(tmp_path: Path, case: str) -> None:
    record = ROUND_TRIP[case]
    path = _save_png(tmp_path, png_info(record))
    meta = read_metadata(path)
    assert (meta.file, meta.format, meta.source) == ("out.png", "PNG", "sdcli")
    assert meta.record == record
    assert (meta.prompt, meta.negative) == (record["prompt"], record["negative"])
    assert meta.parameters == parse_a1111(a1111_parameters(record)).params
    assert meta.parameters["Model"] == record["model"]
    assert (meta.parameters["Width"], meta.parameters["Height"]) == (512, 768)
    assert (meta.parameters["Steps"], meta.parameters["CFG scale"], meta.parameters["Seed"]) == (25, 7.5, 42)
    # The A1111 text alone gives the same prompt (with A1111's LoRA tags) and negative: what other tools see.
    parsed = parse_a1111(meta.raw["parameters"])
    tags = "".join(f" <lora:{lora['name']}:{lora['scale']}>" for lora in record["loras"])
    assert (parsed.prompt, parsed.negative) == (record["prompt"] + tags, record["negative"])
    if record.get("vae"):
        assert parsed.params["VAE"] == record["vae"]


def test_non_latin1_text_goes_in_itxt(tmp_path: Path) -> None:
    path = _save_png(tmp_path, png_info(ROUND_TRIP["cjk-emoji"]))
    assert b"iTXt" in path.read_bytes()
    ascii_path = _save_png(tmp_path, png_info(_record()), "ascii.png")
    assert b"iTXt" not in ascii_path.read_bytes() and b"tEXt" in ascii_path.read_bytes()


def test_extra_chunks_and_no_paths(tmp_path: Path) -> None:
    path = _save_png(tmp_path, png_info(_record(), extra={"Software": "sdcli"}))
    meta = read_metadata(path)
    assert meta.raw["Software"] == "sdcli"
    assert str(tmp_path).encode() not in path.read_bytes()


def test_a1111_only_png_remakes(tmp_path: Path) -> None:
    record = ROUND_TRIP["punctuation"]
    info = PngInfo()
    info.add_text("parameters", a1111_parameters(record))
    meta = read_metadata(_save_png(tmp_path, info))
    assert meta.source == "a1111" and meta.record is None
    assert (meta.prompt, meta.negative) == (record["prompt"] + " <lora:detail:0.5>", record["negative"])
    remade = record_for_remake(meta)  # A1111 takes the LoRA tags out of the prompt, and so does --from
    for key in ("prompt", "negative", "steps", "guidance", "seed", "width", "height", "sampler", "schedule"):
        assert remade[key] == record[key], key
    assert remade["model"] == record["model"] and remade["rng"] == "cpu"


# -- the A1111 parser ----------------------------------------------------------------------------------------


def test_parse_real_v110_text() -> None:
    parsed = parse_a1111(V110)
    assert parsed.prompt == "masterpiece, best quality, 1girl, <lora:add_detail:0.6>"
    assert parsed.negative == "lowres, bad anatomy, (worst quality:1.4)"
    p = parsed.params
    assert p["Steps"] == 30 and p["CFG scale"] == 7 and p["Seed"] == 1234567890
    assert (p["Sampler"], p["Schedule type"]) == ("DPM++ 2M", "Karras")
    assert (p["Width"], p["Height"]) == (832, 1216) and "Size" not in p
    assert p["Model hash"] == "31e35c80fc" and p["Model"] == "sd_xl_base_1.0"
    assert p["Denoising strength"] == 0.55 and p["Clip skip"] == 2 and p["Hires upscale"] == 1.5
    assert p["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert p["Version"] == "v1.10.1"
    record = record_from_a1111(parsed)
    assert record["sampler"] == "DPM++ 2M" and record["schedule"] == "Karras"
    assert record["guidance"] == 7.0 and isinstance(record["guidance"], float)
    assert record["clip_skip"] == 2 and record["strength"] == 0.55 and record["rng"] == "device"
    assert record["model"] == "sd_xl_base_1.0" and record["model_hash"] == "31e35c80fc"


def test_parse_quoted_values_with_commas() -> None:
    text = 'x\nSteps: 20, Sampler: Euler, Lora hashes: "a: 111, b: 222", TI hashes: "e: 333", Seed: 1'
    p = parse_a1111(text).params
    assert p["Lora hashes"] == "a: 111, b: 222" and p["TI hashes"] == "e: 333" and p["Seed"] == 1


def test_parse_multi_line_prompt_without_negative() -> None:
    parsed = parse_a1111(
        "line one,\nline two\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512"
    )
    assert parsed.prompt == "line one,\nline two" and parsed.negative == ""
    assert parsed.params["Sampler"] == "Euler a"


def test_parse_negative_spanning_lines() -> None:
    text = "prompt\nNegative prompt: bad,\nugly\nworse\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5"
    parsed = parse_a1111(text)
    assert parsed.prompt == "prompt" and parsed.negative == "bad,\nugly\nworse"


def test_parse_legacy_sampler_names() -> None:
    p = parse_a1111("x\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 5, Size: 512x512").params
    assert list(p)[:3] == ["Steps", "Sampler", "Schedule type"]
    assert (p["Sampler"], p["Schedule type"]) == ("DPM++ 2M", "Karras")
    p = parse_a1111("x\nSteps: 20, Sampler: DPM++ 2M SDE Exponential, CFG scale: 7, Seed: 5").params
    assert (p["Sampler"], p["Schedule type"]) == ("DPM++ 2M SDE", "Exponential")
    p = parse_a1111("x\nSteps: 20, Sampler: DPM++ 2M SDE Heun, CFG scale: 7, Seed: 5").params
    assert p["Sampler"] == "DPM++ 2M SDE Heun" and "Schedule type" not in p


def test_prompt_only_text() -> None:
    parsed = parse_a1111("a cat, sitting\nstyle: watercolor, mood: calm")  # only 2 pairs on the last line
    assert parsed.prompt == "a cat, sitting\nstyle: watercolor, mood: calm"
    assert parsed.negative == "" and parsed.params == {}


def test_parse_types() -> None:
    p = parse_a1111(
        "x\nSteps: 20, CFG scale: 6.5, Seed: -1, Model hash: 1234567890, Model: 2, Eta: 1e5"
    ).params
    assert p == {
        "Steps": 20,
        "CFG scale": 6.5,
        "Seed": -1,
        "Model hash": "1234567890",
        "Model": "2",
        "Eta": "1e5",
    }


def test_a1111_automatic_schedule_is_the_samplers_own_default() -> None:
    base = "x\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 5, Size: 512x512"
    assert record_from_a1111(parse_a1111(base + ", Schedule type: Automatic"))["schedule"] == "Karras"
    assert "schedule" not in record_from_a1111(parse_a1111(base))  # pre-1.9: the model's default sigmas
    sde = "x\nSteps: 20, Sampler: DPM++ 2M SDE, Schedule type: Automatic, CFG scale: 7, Seed: 5"
    assert record_from_a1111(parse_a1111(sde))["schedule"] == "Exponential"


def test_unknown_a1111_sampler_is_kept() -> None:
    record = record_from_a1111(parse_a1111("x\nSteps: 20, Sampler: Restart, CFG scale: 7, Seed: 5, RNG: NV"))
    assert record["sampler"] == "Restart" and "rng" not in record


# -- JPEG and WebP EXIF --------------------------------------------------------------------------------------


def _save_with_comment(tmp_path: Path, fmt: str, comment: bytes) -> Path:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    path = tmp_path / f"out.{fmt.lower()}"
    Image.new("RGB", (8, 8)).save(path, fmt, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le"])
def test_exif_user_comment(tmp_path: Path, fmt: str, encoding: str) -> None:
    text = (
        "一只狐狸, fox\nNegative prompt: blurry\n"
        + "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 9, Size: 64x64"
    )
    meta = read_metadata(_save_with_comment(tmp_path, fmt, b"UNICODE\0" + text.encode(encoding)))
    assert (meta.format, meta.source) == (fmt, "a1111")
    assert (meta.prompt, meta.negative) == ("一只狐狸, fox", "blurry")
    assert meta.parameters["Sampler"] == "Euler a" and meta.parameters["Width"] == 64


def test_exif_ascii_user_comment(tmp_path: Path) -> None:
    text = "cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 9"
    meta = read_metadata(_save_with_comment(tmp_path, "JPEG", b"ASCII\0\0\0" + text.encode()))
    assert meta.prompt == "cat" and meta.parameters["Seed"] == 9


def test_decode_user_comment_variants() -> None:
    assert decode_user_comment(b"UNICODE\0" + "\ufeffhi".encode("utf-16-le")) == "hi"
    assert decode_user_comment(b"\0" * 8 + b"plain") == "plain"
    assert decode_user_comment(b"UNICODE\0") is None


# -- other tools ---------------------------------------------------------------------------------------------

COMFY_GRAPH = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 156680208700286,
            "steps": 20,
            "cfg": 8.0,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["10", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "SD1.5/v1-5-pruned-emaonly.safetensors"},
    },
    "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "x"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 640, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle, at night", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": ["12", 0], "clip": ["4", 1]}},
    "12": {"class_type": "PrimitiveString", "inputs": {"value": "text, watermark"}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
}


def test_comfyui_graph(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("prompt", json.dumps(COMFY_GRAPH))
    info.add_text("workflow", json.dumps({"nodes": []}))
    meta = read_metadata(_save_png(tmp_path, info))
    assert meta.source == "comfyui"
    assert (meta.prompt, meta.negative) == ("a castle, at night", "text, watermark")
    assert meta.parameters == {
        "Steps": 20,
        "Sampler": "dpmpp_2m",
        "Schedule type": "karras",
        "CFG scale": 8.0,
        "Seed": 156680208700286,
        "Width": 512,
        "Height": 640,
        "Model": "SD1.5/v1-5-pruned-emaonly.safetensors",
        "RNG": "CPU",
    }
    record = record_for_remake(meta)
    assert (record["sampler"], record["schedule"], record["model"]) == (
        "DPM++ 2M",
        "Karras",
        "v1-5-pruned-emaonly",
    )
    assert record["rng"] == "cpu" and record["seed"] == 156680208700286


def test_comfyui_tolerates_missing_pieces(tmp_path: Path) -> None:
    graph = {
        "1": {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": 3, "positive": ["99", 0]}},
        "x": 5,
    }
    info = PngInfo()
    info.add_text("prompt", json.dumps(graph))
    meta = read_metadata(_save_png(tmp_path, info))
    assert meta.source == "comfyui" and meta.prompt is None
    assert meta.parameters == {"Seed": 3, "RNG": "CPU"}


def test_invokeai(tmp_path: Path) -> None:
    data = {
        "positive_prompt": "a lighthouse",
        "negative_prompt": "fog",
        "seed": 77,
        "steps": 30,
        "cfg_scale": 6.5,
        "scheduler": "dpmpp_2m_k",
        "model": {"name": "juggernaut-xl", "base": "sdxl", "key": "abc"},
        "width": 1024,
        "height": 1024,
        "clip_skip": 1,
    }
    info = PngInfo()
    info.add_text("invokeai_metadata", json.dumps(data))
    meta = read_metadata(_save_png(tmp_path, info))
    assert (meta.source, meta.prompt, meta.negative) == ("invokeai", "a lighthouse", "fog")
    assert meta.parameters["Model"] == "juggernaut-xl" and meta.parameters["CFG scale"] == 6.5
    record = record_for_remake(meta)
    assert (record["sampler"], record["schedule"], record["clip_skip"]) == ("DPM++ 2M", "Karras", 2)
    assert (record["width"], record["steps"], record["seed"]) == (1024, 30, 77)


# -- files without metadata, and bad files -------------------------------------------------------------------


def test_image_without_metadata(tmp_path: Path) -> None:
    meta = read_metadata(_save_png(tmp_path, PngInfo()))
    assert (meta.source, meta.prompt, meta.record, meta.parameters) == (None, None, None, {})
    with pytest.raises(UsageError, match="no generation parameters"):
        record_for_remake(meta)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(UsageError, match="notes.png: not a PNG, JPEG or WebP image"):
        read_metadata(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file") as err:
        read_metadata(tmp_path / "gone.png")
    assert str(tmp_path) not in err.value.message


def test_huge_text_chunk(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("parameters", "a" * 3_000_000, zip=True)  # decompresses past Pillow's 1 MB limit
    path = _save_png(tmp_path, info)
    with pytest.raises(UsageError, match="cannot read its metadata") as err:
        read_metadata(path)
    assert "\n" not in err.value.message


def test_remake_prefers_the_sdcli_record(tmp_path: Path) -> None:
    record = _record()
    meta = read_metadata(_save_png(tmp_path, png_info(record)))
    remade = record_for_remake(meta)
    assert remade == record and remade is not meta.record


def test_record_from_a1111_direct() -> None:
    parsed = A1111Params(
        "p", "", {"Steps": 10, "CFG scale": 5, "Seed": 1, "Model": "C:\\models\\x.safetensors"}
    )
    record = record_from_a1111(parsed)
    assert record["model"] == "x" and record["guidance"] == 5.0 and "sampler" not in record


# -- what the A1111 text says that the record alone does not ------------------------------------------------


@pytest.mark.parametrize(
    ("sampler", "schedule", "written"),
    [
        ("DPM++ 2M", None, "Uniform"),  # the model's own sigmas, not A1111's Automatic (Karras)
        ("DPM++ 2M SDE", None, "Uniform"),
        ("DPM++ 2M SDE Heun", None, "Uniform"),
        ("DPM++ 3M SDE", None, "Uniform"),
        ("DPM++ SDE", None, "Uniform"),
        ("DPM++ 2M", "Karras", "Karras"),
        ("Euler", None, None),  # Automatic is the model's own sigmas here too: nothing to say
        ("Euler a", "SGM Uniform", "SGM Uniform"),
    ],
)
def test_schedule_type_is_what_was_used(sampler: str, schedule: str | None, written: str | None) -> None:
    params = parse_a1111(a1111_parameters(_record(sampler=sampler, schedule=schedule))).params
    assert params.get("Schedule type") == written
    # and reading it back re-makes the same schedule
    assert (
        record_from_a1111(parse_a1111(a1111_parameters(_record(sampler=sampler, schedule=schedule)))).get(
            "schedule"
        )
        == schedule
    )


def test_loras_are_tagged_in_the_prompt_once() -> None:
    loras = [{"name": "detail", "hash": "7c6bad76eb54", "scale": 0.5}, {"name": "a:b<c>", "scale": 1.0}]
    text = a1111_parameters(_record(prompt="a fox, <lora:detail:0.7>", loras=loras))
    parsed = parse_a1111(text)
    assert parsed.prompt == "a fox, <lora:detail:0.7> <lora:abc:1>"  # a tag the user wrote stays as it is
    assert record_from_a1111(parsed)["prompt"] == "a fox,"
    only = parse_a1111(a1111_parameters(_record(prompt="", loras=loras[:1])))
    assert only.prompt == "<lora:detail:0.5>"


def test_inpaint_writes_mask_blur() -> None:
    params = parse_a1111(a1111_parameters(_record(mask_blur=4, strength=1.0))).params
    assert params["Mask blur"] == 4 and list(params).index("Mask blur") > list(params).index("RNG")
    assert "Mask blur" not in parse_a1111(a1111_parameters(_record())).params
