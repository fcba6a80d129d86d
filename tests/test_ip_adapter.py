"""--ip-adapter on the tiny SD pipeline: a random IP-Adapter laid out as h94/IP-Adapter is, pixels against
plain diffusers, metadata, --from, usage errors, and the Hub path form through the local Hub stand-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcli.core.ip_adapter_specs import IPAdapterSpec, parse_all
from sdcli.errors import UsageError
from tests.png_helpers import params_and_record, pixels, script_args

WEIGHTS = "ip-adapter_tiny.safetensors"
EMBED_DIM = 24  # the tiny image encoder's projection width


def save_encoder(folder: Path, projection_dim: int = EMBED_DIM) -> Path:
    """A tiny random CLIP vision tower at 32 px: the pipeline's CLIPImageProcessor is made at its size."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=projection_dim,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    )
    CLIPVisionModelWithProjection(config).eval().save_pretrained(folder)
    return folder


def save_adapter(unet_folder: Path, path: Path, seed: int = 0) -> Path:
    """An IP-Adapter state dict in the original (h94) layout, shaped for the UNet: `image_proj` (the plain
    ImageProjModel: 4 tokens) and `ip_adapter.N.to_k_ip/to_v_ip`, N = 1, 3, 5... over the cross-attentions
    in the UNet's processor order, as diffusers' own tests build it. Random and large enough to show."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(unet_folder)
    config = unet.config
    cross = config.cross_attention_dim
    generator = torch.Generator().manual_seed(seed)
    state, key = {}, 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        block = int(name.split(".")[1]) if not name.startswith("mid_block") else -1
        channels = config.block_out_channels
        hidden = channels[-1] if block < 0 else (channels[::-1] if name.startswith("up") else channels)[block]
        for kind in ("k", "v"):
            state[f"ip_adapter.{key}.to_{kind}_ip.weight"] = (
                torch.randn(hidden, cross, generator=generator) * 0.3
            )
        key += 2
    state["image_proj.proj.weight"] = torch.randn(4 * cross, EMBED_DIM, generator=generator) * 0.3
    state["image_proj.proj.bias"] = torch.zeros(4 * cross)
    state["image_proj.norm.weight"] = torch.ones(cross)
    state["image_proj.norm.bias"] = torch.zeros(cross)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, path)
    return path


@pytest.fixture(scope="session")
def ip_repo(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """h94/IP-Adapter's layout: models/ip-adapter_*.safetensors beside models/image_encoder/."""
    root = tmp_path_factory.mktemp("ip-adapters") / "IP-Adapter"
    save_encoder(root / "models" / "image_encoder")
    save_adapter(tiny_sd / "unet", root / "models" / WEIGHTS)
    return root


@pytest.fixture(scope="session")
def tiny_ip(ip_repo: Path) -> Path:
    return ip_repo / "models" / WEIGHTS


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ip-images") / "face.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def run(cli, model: Path, *extra: object, out: str = "out.png", command: str = "generate"):
    return cli(command, "a red boat", "-m", model, "--steps", "2", "--seed", "9", "-o", out, *extra)


def plain_diffusers(tiny_sd: Path, ip_repo: Path, reference: Path, scale: float) -> np.ndarray:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(ip_repo), subfolder="models", weight_name=WEIGHTS)
    pipe.set_ip_adapter_scale(scale)
    with Image.open(reference) as im:
        image = im.convert("RGB")
    return np.asarray(
        pipe(
            "a red boat",
            ip_adapter_image=image,
            **script_args(steps=2, seed=9),
        ).images[0]
    )


@pytest.mark.parametrize(
    ("text", "source", "scale"),
    [
        ("a/b/c.safetensors", "a/b/c.safetensors", 1.0),
        ("a/b/c.safetensors:0.6", "a/b/c.safetensors", 0.6),
        ("./we:ird.safetensors", "./we:ird.safetensors", 1.0),
        ("x.bin:1e-1", "x.bin", 0.1),
    ],
)
def test_spec_parsing(text: str, source: str, scale: float) -> None:
    spec = IPAdapterSpec.parse(text, Path("i.png"))
    assert (spec.source, spec.scale, spec.image) == (source, scale, Path("i.png"))


def test_pixels_equal_plain_diffusers(
    cli, tiny_sd: Path, ip_repo: Path, tiny_ip: Path, reference: Path
) -> None:
    result = run(cli, tiny_sd, "--ip-adapter", f"{tiny_ip}:0.6", "--ip-image", reference)
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(pixels("out.png"), plain_diffusers(tiny_sd, ip_repo, reference, 0.6))
    plain = run(cli, tiny_sd, out="plain.png")
    assert plain.exit_code == 0, plain.stderr
    assert np.abs(pixels("out.png").astype(int) - pixels("plain.png")).mean() > 1  # the adapter shows


def test_the_module_below_the_cli(tiny_sd: Path, ip_repo: Path, tiny_ip: Path, reference: Path) -> None:
    from sdcli.core.requests import GenerationRequest, ModelRequest
    from sdcli.generation import engine
    from sdcli.model import pipelines

    specs = parse_all((f"{tiny_ip}:0.6",), (str(reference),))
    model = pipelines.load_model(ModelRequest(model=str(tiny_sd), ip_adapters=specs))
    request = GenerationRequest(prompt="a red boat", steps=2, seed=9, width=64, height=64).validated()
    (image,) = engine.generate(model, request)
    assert image.record["ip_adapters"][0]["scale"] == 0.6
    assert np.array_equal(np.asarray(image.image), plain_diffusers(tiny_sd, ip_repo, reference, 0.6))


def test_metadata_and_from(cli, tiny_sd: Path, tiny_ip: Path, reference: Path) -> None:
    result = run(cli, tiny_sd, "--ip-adapter", f"{tiny_ip}:0.6", "--ip-image", reference, out="a.png")
    assert result.exit_code == 0, result.stderr
    params, record = params_and_record("a.png")
    (found,) = record["ip_adapters"]
    assert found["name"] == "ip-adapter_tiny" and len(found["hash"]) == 10 and found["scale"] == 0.6
    assert found["image"]["name"] == "face.png" and len(found["image"]["hash"]) == 10
    assert "source" not in found and str(tiny_ip.parent) not in params + str(record)  # no local path
    assert (
        f'ControlNet 0: "Module: ip-adapter_clip_h, Model: ip-adapter_tiny [{found["hash"]}], Weight: 0.6, '
        'Guidance Start: 0, Guidance End: 1"'
    ) in params

    from_a = ("generate", "--from", "a.png", "-m", tiny_sd)
    without = cli(*from_a, "-o", "b.png")
    assert without.exit_code == 0, without.stderr
    assert "IP-Adapter ip-adapter_tiny at scale 0.6" in without.stderr and "--ip-image" in without.stderr
    # Named again without a scale: the stored one is taken, and so are the pixels.
    again = cli(*from_a, "-o", "c.png", "--ip-adapter", tiny_ip, "--ip-image", reference)
    assert again.exit_code == 0, again.stderr
    assert "IP-Adapter" not in again.stderr
    assert np.array_equal(pixels("a.png"), pixels("c.png"))


def test_a1111_ip_adapter_units_read_back() -> None:
    from sdcli.images import metadata

    text = (
        "a house\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
        'ControlNet 0: "Module: canny, Model: control_canny [d14c016b], Weight: 0.8, '
        'Guidance Start: 0, Guidance End: 1", '
        'ControlNet 1: "Module: ip-adapter_clip_sd15, Model: ip-adapter_sd15 [6a3f9d1c], Weight: 0.6, '
        'Guidance Start: 0, Guidance End: 1"'
    )
    record = metadata.record_from_a1111(metadata.parse_a1111(text))
    assert [unit["name"] for unit in record["controlnets"]] == ["control_canny"]
    assert record["ip_adapters"] == [
        {"name": "ip-adapter_sd15", "hash": "6a3f9d1c", "scale": 0.6, "module": "ip-adapter_clip_sd15"}
    ]
    written = metadata.a1111_parameters({"prompt": "a house", **record})
    assert 'ControlNet 0: "Module: canny, Model: control_canny [d14c016b]' in written
    assert (
        'ControlNet 1: "Module: ip-adapter_clip_sd15, Model: ip-adapter_sd15 [6a3f9d1c], Weight: 0.6'
        in written
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--ip-image", "{img}"), "--ip-image needs --ip-adapter"),
        (("--ip-adapter", "{ip}"), "--ip-adapter needs its reference image"),
        (("--ip-adapter", "{ip}:3", "--ip-image", "{img}"), "the scale must be between 0 and 2, got 3"),
        (("--ip-adapter", "{ip}:nan", "--ip-image", "{img}"), "the scale must be between 0 and 2"),
        (("--ip-adapter", "./none.safetensors", "--ip-image", "{img}"), "none.safetensors: no such file"),
        (("--ip-adapter", "{ip}", "--ip-image", "missing.png"), "--ip-image missing.png: no such file"),
        (("--ip-adapter", "{ip}", "--ip-image", "{bad}"), "broken.png"),
        (("--ip-adapter", "{ip}", "--ip-adapter", "{ip}", "--ip-image", "{img}"), "2 --ip-adapter but 1"),
        (("--ip-adapter", "{ip}", "--ip-image", "{img}", "--ip-image-encoder", "./nope"), "no such folder"),
        (("--ip-adapter", "{pt}", "--ip-image", "{img}"), "--allow-pickle"),
    ],
)
def test_bad_inputs_exit_2_before_loading(
    cli, tiny_ip: Path, reference: Path, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    broken, pickled = tmp_path / "broken.png", tmp_path / "old.bin"
    broken.write_bytes(b"not a png")
    pickled.write_bytes(b"x")
    args = [a.format(ip=tiny_ip, img=reference, bad=broken, pt=pickled) for a in extra]
    result = cli("generate", "a cat", "-m", "no/such-model", "-o", "x.png", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert "no/such-model" not in result.stderr  # it failed before the model was looked for
    assert len(result.stderr.strip().splitlines()) <= 2  # error, and maybe a hint
    assert not (tmp_path / "x.png").exists()


def test_sd15_adapter_on_sdxl_is_a_usage_error(cli, tiny_sdxl: Path, tiny_ip: Path, reference: Path) -> None:
    result = run(cli, tiny_sdxl, "--ip-adapter", tiny_ip, "--ip-image", reference)
    assert result.exit_code == 2, result.stderr
    assert "does not fit" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
    assert not Path("out.png").exists()


def test_encoder_of_the_wrong_width_names_ip_image_encoder(
    cli, tiny_sd: Path, tiny_ip: Path, reference: Path, tmp_path: Path
) -> None:
    other = save_encoder(tmp_path / "wide-encoder", projection_dim=40)
    result = run(cli, tiny_sd, "--ip-adapter", tiny_ip, "--ip-image", reference, "--ip-image-encoder", other)
    assert result.exit_code == 2, result.stderr
    assert (
        "width 24" in result.stderr and "gives 40" in result.stderr and "--ip-image-encoder" in result.stderr
    )


def test_encoder_in_the_parent_folder_or_named(
    cli, tiny_sd: Path, ip_repo: Path, tiny_ip: Path, reference: Path, tmp_path: Path
) -> None:
    import shutil

    root = tmp_path / "flat"
    shutil.copytree(ip_repo / "models" / "image_encoder", root / "image_encoder")
    (root / "sub").mkdir()
    shutil.copy(tiny_ip, root / "sub" / WEIGHTS)
    lone = tmp_path / "lone" / WEIGHTS
    lone.parent.mkdir()
    shutil.copy(tiny_ip, lone)
    common = ("--ip-image", reference)
    beside = run(cli, tiny_sd, "--ip-adapter", tiny_ip, *common, out="beside.png")
    parent = run(cli, tiny_sd, "--ip-adapter", root / "sub" / WEIGHTS, *common, out="parent.png")
    missing = run(cli, tiny_sd, "--ip-adapter", lone, *common, out="missing.png")
    named = run(
        cli,
        tiny_sd,
        "--ip-adapter",
        lone,
        *common,
        "--ip-image-encoder",
        root / "image_encoder",
        out="named.png",
    )
    assert beside.exit_code == parent.exit_code == named.exit_code == 0, beside.stderr + parent.stderr
    assert np.array_equal(pixels("beside.png"), pixels("parent.png"))
    assert np.array_equal(pixels("beside.png"), pixels("named.png"))
    assert missing.exit_code == 2 and "--ip-image-encoder" in missing.stderr


def test_hub_path_through_the_hub_stand_in(
    cli,
    hub_server,
    tiny_sd: Path,
    ip_repo: Path,
    tiny_ip: Path,
    reference: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sdcli.core.image_args import ImageArgs
    from sdcli.images import remake

    hub_server.add_repo("h94/IP-Adapter", ip_repo)
    hub = f"h94/IP-Adapter/models/{WEIGHTS}"
    local = run(cli, tiny_sd, "--ip-adapter", f"{tiny_ip}:0.6", "--ip-image", reference, out="local.png")
    online = run(cli, tiny_sd, "--ip-adapter", f"{hub}:0.6", "--ip-image", reference, out="hub.png")
    assert local.exit_code == 0 and online.exit_code == 0, local.stderr + online.stderr
    assert np.array_equal(pixels("local.png"), pixels("hub.png"))
    _params, record = params_and_record("hub.png")
    assert record["ip_adapters"][0]["source"] == hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(hub_server.requests)
    # --from reuses a Hub adapter and its scale; only the reference image is given again.
    again = cli("generate", "--from", "hub.png", "-m", tiny_sd, "-o", "again.png", "--ip-image", reference)
    assert again.exit_code == 0, again.stderr
    assert len(hub_server.requests) == before  # from the cache
    assert np.array_equal(pixels("hub.png"), pixels("again.png"))
    warned = cli("generate", "--from", "hub.png", "-m", tiny_sd, "-o", "plain.png")
    assert warned.exit_code == 0 and "pass --ip-image IMAGE" in warned.stderr

    # A Hub encoder named with --ip-image-encoder is recorded and reused with the adapter.
    encoder = ("--ip-image-encoder", "h94/IP-Adapter/models/image_encoder")
    named = run(
        cli, tiny_sd, "--ip-adapter", f"{hub}:0.6", "--ip-image", reference, *encoder, out="named.png"
    )
    assert named.exit_code == 0, named.stderr
    assert params_and_record("named.png")[1]["ip_adapters"][0]["image_encoder"] == encoder[1]
    assert np.array_equal(pixels("hub.png"), pixels("named.png"))
    remade = remake.apply(ImageArgs(from_=Path("named.png"), ip_image=(str(reference),)))[0]
    assert (remade.ip_adapter, remade.ip_image_encoder) == ((f"{hub}:0.6",), encoder[1])

    uncached = run(cli, tiny_sd, "--ip-adapter", "h94/Other/models/x.safetensors", "--ip-image", reference)
    assert uncached.exit_code == 3 and "not in the local cache" in uncached.stderr


def test_img2img_with_an_ip_adapter(
    cli, tiny_sd: Path, tiny_ip: Path, reference: Path, tmp_path: Path
) -> None:
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photo)
    args = (
        "--steps",
        "4",
        "--seed",
        "3",
        "-o",
        "out.png",
        "--ip-adapter",
        f"{tiny_ip}:0.8",
        "--ip-image",
        reference,
    )
    result = cli("img2img", "a red boat", photo, "-m", tiny_sd, *args)
    assert result.exit_code == 0, result.stderr
    _params, record = params_and_record("out.png")
    assert record["pipeline"] == "StableDiffusionImg2ImgPipeline" and record["ip_adapters"][0]["scale"] == 0.8

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(tiny_sd)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(tiny_ip.parent), subfolder="", weight_name=WEIGHTS)
    pipe.set_ip_adapter_scale(0.8)
    with Image.open(photo) as a, Image.open(reference) as b:
        init, ref = a.convert("RGB"), b.convert("RGB")
    expected = pipe(
        "a red boat",
        image=init,
        ip_adapter_image=ref,
        strength=0.75,
        num_inference_steps=4,
        guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(3),
    ).images[0]
    assert np.array_equal(pixels("out.png"), np.asarray(expected))


def test_worker_refuses_ip_adapters() -> None:
    from sdcli.core.requests import ModelRequest
    from sdcli.worker import protocol

    data = {
        **protocol.model_to_json(ModelRequest()),
        "ip_adapters": [{"source": "x", "image": "/etc/passwd"}],
    }
    with pytest.raises(protocol.BadRequest, match="does not run IP-Adapters"):
        protocol.model_from_json(data)
    data = {**protocol.model_to_json(ModelRequest()), "ip_image_encoder": "/tmp/enc"}
    with pytest.raises(protocol.BadRequest, match="does not run IP-Adapters"):
        protocol.model_from_json(data)
    assert protocol.model_from_json(protocol.model_to_json(ModelRequest())) == ModelRequest().validated()


def test_parse_all_needs_one_image_each() -> None:
    with pytest.raises(UsageError, match="needs its reference image"):
        parse_all(("a/b/c.safetensors",), ())
    with pytest.raises(UsageError, match="--ip-image-encoder needs --ip-adapter"):
        parse_all((), (), "enc")


def test_with_a_controlnet_the_hires_fix_and_inpaint(
    cli, tiny_sd: Path, tiny_ip: Path, reference: Path, tmp_path: Path
) -> None:
    """IP-Adapter is loaded on the final pipeline: the ControlNet one, the hires fix's img2img (from_pipe
    carries the encoder and the UNet's processors) and inpaint."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    controlnet = ControlNetModel.from_unet(
        UNet2DConditionModel.from_pretrained(tiny_sd / "unet"), conditioning_embedding_out_channels=(8, 16)
    )
    controlnet.save_pretrained(tmp_path / "cn")
    ip = ("--ip-adapter", f"{tiny_ip}:0.7", "--ip-image", reference)
    both = run(cli, tiny_sd, *ip, "--controlnet", f"{tmp_path / 'cn'}:{reference}", out="both.png")
    assert both.exit_code == 0, both.stderr
    _params, record = params_and_record("both.png")
    assert (
        record["pipeline"] == "StableDiffusionControlNetPipeline" and record["ip_adapters"][0]["scale"] == 0.7
    )
    assert 'ControlNet 1: "Module: ip-adapter_clip_h' in _params

    hires = ("--hires-scale", "1.5", "--hires-steps", "1")
    with_ip = run(cli, tiny_sd, *ip, *hires, out="hires.png")
    without = run(cli, tiny_sd, *hires, out="hires-plain.png")
    assert with_ip.exit_code == 0 and without.exit_code == 0, with_ip.stderr + without.stderr
    assert pixels("hires.png").shape == (96, 96, 3)
    assert not np.array_equal(pixels("hires.png"), pixels("hires-plain.png"))

    photo, mask = tmp_path / "photo.png", tmp_path / "mask.png"
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photo)
    Image.new("L", (64, 64), 255).save(mask)
    common = (photo, mask, "a dog", "-m", tiny_sd, "--steps", "2", "--seed", "2", "--strength", "1")
    painted = cli("inpaint", *common, "-o", "ip.png", *ip)
    assert painted.exit_code == 0, painted.stderr
    assert params_and_record("ip.png")[1]["pipeline"] == "StableDiffusionInpaintPipeline"


def test_two_adapters_equal_plain_diffusers(
    cli, tiny_sd: Path, ip_repo: Path, tiny_ip: Path, reference: Path, tmp_path: Path
) -> None:
    import shutil

    from diffusers import StableDiffusionPipeline

    root = tmp_path / "repo"
    shutil.copytree(ip_repo, root)
    second = save_adapter(tiny_sd / "unet", root / "models" / "ip-adapter_other.safetensors", seed=1)
    other = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(other)
    result = run(
        cli,
        tiny_sd,
        *("--ip-adapter", f"{root / 'models' / WEIGHTS}:0.5", "--ip-image", reference),
        *("--ip-adapter", f"{second}:0.8", "--ip-image", other),
    )
    assert result.exit_code == 0, result.stderr
    params, record = params_and_record("out.png")
    assert [a["name"] for a in record["ip_adapters"]] == ["ip-adapter_tiny", "ip-adapter_other"]
    assert 'ControlNet 1: "Module: ip-adapter_clip_h, Model: ip-adapter_other' in params

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(root), subfolder="models", weight_name=[WEIGHTS, second.name])
    pipe.set_ip_adapter_scale([0.5, 0.8])
    with Image.open(reference) as a, Image.open(other) as b:
        images = [a.convert("RGB"), b.convert("RGB")]
    expected = pipe(
        "a red boat",
        ip_adapter_image=images,
        **script_args(steps=2, seed=9),
    ).images[0]
    assert np.array_equal(pixels("out.png"), np.asarray(expected))


def test_scale_zero_is_the_image_without_the_adapter(
    cli, tiny_sd: Path, tiny_ip: Path, reference: Path
) -> None:
    zero = run(cli, tiny_sd, "--ip-adapter", f"{tiny_ip}:0", "--ip-image", reference, out="zero.png")
    plain = run(cli, tiny_sd, out="plain.png")
    assert zero.exit_code == 0 and plain.exit_code == 0, zero.stderr + plain.stderr
    assert np.array_equal(pixels("zero.png"), pixels("plain.png"))


def test_sdxl_pixels_equal_plain_diffusers(cli, tiny_sdxl: Path, reference: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    from sdcli.generation import prompts

    root = tmp_path / "IP-Adapter"
    save_encoder(root / "sdxl_models" / "image_encoder")
    weights = save_adapter(tiny_sdxl / "unet", root / "sdxl_models" / "ip-adapter_tiny_sdxl.safetensors")
    result = run(cli, tiny_sdxl, "--ip-adapter", f"{weights}:0.7", "--ip-image", reference, out="xl.png")
    assert result.exit_code == 0, result.stderr
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(root), subfolder="sdxl_models", weight_name=weights.name)
    pipe.set_ip_adapter_scale(0.7)
    size = pixels("xl.png").shape
    # sdcli encodes SDXL prompts itself (A1111's way), so the plain script takes the same embeddings.
    texts = prompts.encode(pipe, "a red boat", "", weighting="a1111", clip_skip=1, long=True).batch(1)
    with Image.open(reference) as im:
        image = im.convert("RGB")
    expected = pipe(
        **texts,
        ip_adapter_image=image,
        **script_args(steps=2, seed=9, width=size[1], height=size[0]),
    ).images[0]
    assert np.array_equal(pixels("xl.png"), np.asarray(expected))
    plain = run(cli, tiny_sdxl, out="plain.png")
    assert plain.exit_code == 0, plain.stderr
    assert not np.array_equal(pixels("xl.png"), pixels("plain.png"))


@pytest.mark.parametrize(
    ("stored", "images", "reused", "warning"),
    [
        (
            [{"name": "a", "scale": 0.5, "source": "org/repo/a.safetensors"}],
            ("r.png",),
            ("org/repo/a.safetensors:0.5",),
            None,
        ),
        ([{"name": "a", "scale": 0.5, "source": "org/repo/a.safetensors"}], (), (), "pass --ip-image IMAGE"),
        # A record naming a local path (a hostile or edited file) is never loaded from it.
        ([{"name": "x", "scale": 0.5, "source": "/etc/x.safetensors"}], ("r.png",), (), "a local file"),
        ([{"name": "x", "scale": "big", "source": "../x.safetensors"}], (), (), "x at scale 1"),
        ("not a list", (), (), None),
    ],
)
def test_from_reuses_only_hub_adapters(
    stored: object, images: tuple[str, ...], reused: tuple[str, ...], warning: str | None
) -> None:
    from sdcli.core.image_args import ImageArgs
    from sdcli.images import remake

    changes, warnings = remake._ip_adapters({"ip_adapters": stored}, ImageArgs(ip_image=images))
    assert changes.get("ip_adapter", ()) == reused
    assert (warning is None and not warnings) or (warning is not None and warning in warnings[0])
