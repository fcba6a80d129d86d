"""Shared Typer options: each help text is written once, and the image commands' shared option block is
declared once (`image_options`) and handed to the command as one `ImageArgs`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from sdcli.core.image_args import ImageArgs

Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar="SDCLI_MODEL",
        help="Hub repo id, local diffusers folder, or single-file checkpoint (.safetensors).",
    ),
]
Revision = Annotated[str | None, typer.Option(help="Hub branch, tag or commit.")]
Variant = Annotated[
    str | None,
    typer.Option(help="Weight variant to load, e.g. fp16.", envvar="SDCLI_VARIANT"),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        "--sampler",
        envvar="SDCLI_SCHEDULER",
        help="Sampler: A1111 name ('Euler a', 'DPM++ 2M', ...) or diffusers class. Default: the model's own.",
    ),
]
Schedule = Annotated[
    str | None,
    typer.Option(help="Sigma schedule: karras, exponential, beta, sgm_uniform."),
]
Offline = Annotated[
    bool,
    typer.Option(
        "--offline", help="Never touch the network; use cached models only (also HF_HUB_OFFLINE=1)."
    ),
]

Negative = Annotated[str, typer.Option("--negative", "-n", help="Negative prompt.")]
Steps = Annotated[
    int,
    typer.Option("--steps", "-s", envvar="SDCLI_STEPS", help="Denoising steps."),
]
Guidance = Annotated[
    float,
    typer.Option(
        "--guidance",
        "--cfg",
        "-g",
        envvar="SDCLI_GUIDANCE",
        help="Classifier-free guidance scale (A1111 'CFG scale').",
    ),
]
Width = Annotated[
    int | None,
    typer.Option(
        "--width",
        "-W",
        help="Width in pixels (default: the model's native size).",
    ),
]
Height = Annotated[
    int | None,
    typer.Option(
        "--height",
        "-H",
        help="Height in pixels (default: the model's native size).",
    ),
]
Seed = Annotated[
    int | None,
    typer.Option(
        help="Seed of the first image; image i gets seed+i. Default: random, always recorded.",
    ),
]
Count = Annotated[int, typer.Option("--count", "-c", help="Number of images.")]
BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        "-b",
        help="Images per pipeline call (more is faster, needs more memory).",
    ),
]

Device = Annotated[
    str,
    typer.Option(
        envvar="SDCLI_DEVICE",
        help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.",
    ),
]
Dtype = Annotated[
    str,
    typer.Option(
        envvar="SDCLI_DTYPE",
        help="auto (fp16 on GPU, fp32 on CPU), fp16, bf16 or fp32.",
    ),
]

Output = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        envvar="SDCLI_OUTPUT",
        help="Folder, or file-name template with {seed} {index} {prompt} {date} {time} {model}. "
        "Default: outputs/{date}-{time}-{seed}-{prompt}.png",
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")]
NoMetadata = Annotated[
    bool,
    typer.Option("--no-metadata", help="Write no parameters into the PNG."),
]
Json = Annotated[
    bool,
    typer.Option("--json", help="One JSON object per line on stdout; nothing else there."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes on stderr.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
NoWorker = Annotated[
    bool,
    typer.Option("--no-worker", help="Run here even when a worker (sdcli serve) is up; see SDCLI_WORKER."),
]

FromImage = Annotated[
    Path | None,
    typer.Option(
        "--from",
        help="Re-make an image: its stored parameters become the defaults; options given here win.",
    ),
]
Offload = Annotated[
    str,
    typer.Option(
        help="none, model (move each model to the GPU when used) or sequential (smallest, slowest)."
    ),
]
VaeTiling = Annotated[bool, typer.Option("--vae-tiling", help="Decode in tiles (large images, less memory).")]
VaeSlicing = Annotated[bool, typer.Option("--vae-slicing", help="Decode a batch one image at a time.")]
AttentionSlicing = Annotated[
    bool, typer.Option("--attention-slicing", help="Compute attention in slices (less memory, ~10% slower).")
]
ChannelsLast = Annotated[
    bool, typer.Option("--channels-last", help="channels_last memory format for the UNet.")
]
Compile = Annotated[
    bool, typer.Option("--compile", help="torch.compile the UNet: slow first image, faster after (batches).")
]
Quantize = Annotated[
    str | None,
    typer.Option(
        help="Load the transformer/UNet (and T5) quantized: bnb-4bit, bnb-8bit (bitsandbytes), torchao-int8, "
        "torchao-int4 (torchao). Needs that package: pip install 'sdcli[bitsandbytes]' or 'sdcli[torchao]'."
    ),
]
TinyVae = Annotated[
    str | None,
    typer.Option(help="Decode with a tiny autoencoder (local folder or cached id, e.g. madebyollin/taesd)."),
]
LowVram = Annotated[
    bool,
    typer.Option("--low-vram", help="For small GPUs: --offload model --vae-tiling --vae-slicing."),
]
OomRetry = Annotated[
    bool, typer.Option("--oom-retry", help="On out-of-memory, retry with VAE tiling, then model offload.")
]
NoSafetyChecker = Annotated[
    bool, typer.Option("--no-safety-checker", help="Do not run the model's safety checker.")
]
KeepFiltered = Annotated[
    bool,
    typer.Option("--keep-filtered", help="Write images the safety checker blanked, named with -nsfw."),
]
Rng = Annotated[
    str,
    typer.Option(help="cpu (a seed gives the same image on any device) or device (the device's generator)."),
]
PromptsFile = Annotated[
    str | None,
    typer.Option(
        "--prompts-file",
        help="One prompt per line (# comments), or JSON Lines with per-line options; - reads stdin.",
    ),
]
Wildcards = Annotated[
    Path | None,
    typer.Option(
        "--wildcards",
        envvar="SDCLI_WILDCARDS",
        metavar="DIR",
        help="Folder of NAME.txt wildcard files (one choice per line) for __NAME__ in prompts.",
    ),
]
XY = Annotated[
    list[str] | None,
    typer.Option(
        "--xy",
        metavar="AXIS=V1,V2,...",
        help="A1111's X/Y/Z plot: one image per combination and a labelled sheet. Repeat for Y and Z. "
        "AXIS: steps, cfg, seed, width, height, clip-skip, negative, prompt (search/replace).",
    ),
]
Grid = Annotated[bool, typer.Option("--grid", help="Also write a contact sheet of the run's images.")]
GridRows = Annotated[int | None, typer.Option(help="Rows of the --grid sheet (default: near-square).")]
# generate's hires fix (A1111's names in the help)
HiresScale = Annotated[
    float | None,
    typer.Option(
        "--hires-scale",
        metavar="F",
        help="Hires fix: a second img2img pass at F times the size (A1111 'Hires upscale', e.g. 2).",
    ),
]
HiresSteps = Annotated[
    int,
    typer.Option(
        "--hires-steps", metavar="N", help="Steps the hires pass runs, as in A1111 (0: the same as --steps)."
    ),
]
HiresStrength = Annotated[
    float,
    typer.Option("--hires-strength", metavar="S", help="Denoising strength of the hires pass, 0 < S <= 1."),
]
HiresUpscaler = Annotated[
    str,
    typer.Option(
        "--hires-upscaler",
        help="latent (upscale the latents, nearest), lanczos (decode, resize the pixels, encode), or "
        "an upscaler model as `sdcli upscale --upscaler` takes: an ESRGAN-family .safetensors/.pth "
        "(sdcli[upscale]) or a diffusers upscaler folder or Hub id.",
    ),
]
# generate's and img2img's SDXL refiner (A1111's "Refiner", "Refiner switch at")
Refiner = Annotated[
    str | None,
    typer.Option(
        "--refiner",
        metavar="MODEL",
        help="SDXL refiner (folder, Hub id or .safetensors) that runs the steps after --refiner-switch.",
    ),
]
RefinerSwitch = Annotated[
    float,
    typer.Option(
        "--refiner-switch",
        metavar="F",
        help="Fraction of the steps after which the refiner takes over, 0 < F < 1 ('Refiner switch at').",
    ),
]
# img2img and inpaint
InputImages = Annotated[
    list[str],
    typer.Argument(
        help="Input images: files, folders (their PNG/JPEG/WebP files) or quoted globs ('photos/*.jpg').",
        show_default=False,
    ),
]
InputImage = Annotated[str, typer.Argument(help="Image to repaint (PNG, JPEG or WebP).", show_default=False)]
Mask = Annotated[
    str,
    typer.Argument(
        help="Mask: white is repainted, black kept; any size (stretched to the image).", show_default=False
    ),
]
Strength = Annotated[
    float,
    typer.Option(
        "--strength",
        help="How much to change the input, 0 < s <= 1 (A1111 'Denoising strength'); "
        "runs int(steps * strength) steps.",
    ),
]
MaskBlur = Annotated[
    int,
    typer.Option("--mask-blur", help="Soften the mask edge: Gaussian blur radius in pixels (A1111's name)."),
]
InputWidth = Annotated[
    int | None,
    typer.Option("--width", "-W", help="Width in pixels (default: the input's, cut to a multiple of 8)."),
]
InputHeight = Annotated[
    int | None,
    typer.Option("--height", "-H", help="Height in pixels (default: the input's, cut to a multiple of 8)."),
]
Resize = Annotated[
    str,
    typer.Option(
        help="With --width and --height: crop (cover the size, cut the overflow), fit (fit inside, pad "
        "with white) or stretch.",
    ),
]
InputOutput = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        envvar="SDCLI_OUTPUT",
        help="Folder, or file-name template with {input} {seed} {index} {prompt} {date} {time} {model}. "
        "Default: outputs/{date}-{time}-{input}-{seed}.png",
    ),
]

# Models and controls: single-file checkpoints, LoRAs, embeddings, prompt encoding.
Config = Annotated[
    str | None,
    typer.Option(
        metavar="MODEL_OR_DIR",
        help="For a single-file checkpoint: diffusers folder or cached Hub id with its family's configs "
        "and tokenizers. Default: the family's reference repo from the cache.",
    ),
]
AllowPickle = Annotated[
    bool,
    typer.Option(
        "--allow-pickle",
        help="Read .ckpt/.pt/.bin/.pth weights (tensors only, torch.load weights_only=True).",
    ),
]
Lora = Annotated[
    list[str] | None,
    typer.Option(
        "--lora",
        metavar="PATH_OR_REPO[:SCALE]",
        help="LoRA file or Hub repo[/file], weight after the last ':' (default 1). Repeatable.",
    ),
]
Embedding = Annotated[
    list[str] | None,
    typer.Option(
        "--embedding",
        metavar="PATH[:TOKEN]",
        help="Textual-inversion embedding; its token defaults to the file name. Repeatable.",
    ),
]
ControlNet = Annotated[
    list[str] | None,
    typer.Option(
        "--controlnet",
        metavar="MODEL:IMAGE[:SCALE[:START:END]]",
        help="ControlNet (folder, .safetensors or Hub id) and its control image; weight (default 1) and "
        "guidance window (default 0:1) after ':'. Repeatable.",
    ),
]
ControlPreprocess = Annotated[
    str,
    typer.Option(
        "--control-preprocess",
        help="Turn each control image into its map: canny, depth, or none (used as is).",
    ),
]
DepthModel = Annotated[
    str | None,
    typer.Option(
        "--depth-model",
        metavar="ID_OR_FOLDER",
        help="The transformers depth-estimation model of --control-preprocess depth (Depth Anything, DPT). "
        "Default: depth-anything/Depth-Anything-V2-Small-hf.",
    ),
]
IPAdapter = Annotated[
    list[str] | None,
    typer.Option(
        "--ip-adapter",
        metavar="MODEL[:SCALE]",
        help="IP-Adapter weights (a file, or a Hub owner/repo/path/file.safetensors) and its scale, 0 to 2 "
        "(default 1); its image encoder is the image_encoder folder beside it or its parent's. Repeatable, "
        "one --ip-image each.",
    ),
]
IPImage = Annotated[
    list[str] | None,
    typer.Option("--ip-image", metavar="IMAGE", help="The reference image of each --ip-adapter, in order."),
]
IPImageEncoder = Annotated[
    str | None,
    typer.Option(
        "--ip-image-encoder",
        metavar="PATH",
        help="The CLIP image encoder folder (or Hub owner/repo/folder) when it is not beside the adapter: "
        "h94's SDXL vit-h adapters use h94/IP-Adapter/models/image_encoder.",
    ),
]
ClipSkip = Annotated[
    int,
    typer.Option(
        "--clip-skip", metavar="N", help="Text-encoder layer from the end, A1111 numbering (1 = last)."
    ),
]
Weighting = Annotated[
    str,
    typer.Option(help="Prompt attention syntax: a1111 ((word), (word:1.3), [word], BREAK) or none."),
]
NoLongPrompts = Annotated[
    bool,
    typer.Option(
        "--no-long-prompts",
        help="Cut prompts at 75 tokens (with a warning) instead of encoding them in 75-token chunks.",
    ),
]


# The options generate, img2img and inpaint share, in the order --help lists them; their defaults are
# ImageArgs' own. A command that declares one of these names itself (img2img's --width help) keeps its own.
SHARED_OPTIONS: dict[str, Any] = {
    "negative": Negative,
    "from_": FromImage,
    "model": Model,
    "revision": Revision,
    "variant": Variant,
    "config": Config,
    "allow_pickle": AllowPickle,
    "lora": Lora,
    "embedding": Embedding,
    "controlnet": ControlNet,
    "control_preprocess": ControlPreprocess,
    "depth_model": DepthModel,
    "ip_adapter": IPAdapter,
    "ip_image": IPImage,
    "ip_image_encoder": IPImageEncoder,
    "scheduler": Scheduler,
    "schedule": Schedule,
    "clip_skip": ClipSkip,
    "weighting": Weighting,
    "no_long_prompts": NoLongPrompts,
    "steps": Steps,
    "guidance": Guidance,
    "width": Width,
    "height": Height,
    "seed": Seed,
    "count": Count,
    "batch_size": BatchSize,
    "device": Device,
    "dtype": Dtype,
    "rng": Rng,
    "offload": Offload,
    "low_vram": LowVram,
    "vae_tiling": VaeTiling,
    "vae_slicing": VaeSlicing,
    "attention_slicing": AttentionSlicing,
    "channels_last": ChannelsLast,
    "compile": Compile,
    "tiny_vae": TinyVae,
    "quantize": Quantize,
    "oom_retry": OomRetry,
    "no_safety_checker": NoSafetyChecker,
    "keep_filtered": KeepFiltered,
    "output": Output,
    "overwrite": Overwrite,
    "no_metadata": NoMetadata,
    "json_": Json,
    "quiet": Quiet,
    "offline": Offline,
    "debug": Debug,
    "no_worker": NoWorker,
}
_ARG_DEFAULTS = {f.name: f.default for f in fields(ImageArgs) if f.name in ImageArgs.names()}
_LISTS = (
    "lora",
    "embedding",
    "controlnet",
    "ip_adapter",
    "ip_image",
)  # repeatable: Typer gives a list or None, ImageArgs holds a tuple


def command_options(ctx: typer.Context) -> dict[str, dict[str, Any]]:
    """Each command's options by name, with the environment variable each reads (or None)."""
    commands = getattr(ctx.find_root().command, "commands", {})
    return {name: {p.name: p.envvar for p in cmd.params if p.name} for name, cmd in commands.items()}


def given_from(ctx: typer.Context, source_name: str) -> frozenset[str]:
    """The parameters whose value came from `source_name`: COMMANDLINE, DEFAULT, ENVIRONMENT, DEFAULT_MAP."""
    return frozenset(
        name
        for name in ctx.params
        if (source := ctx.get_parameter_source(name)) is not None and source.name == source_name
    )


def image_options(command: Callable[..., None]) -> Callable[..., None]:
    """Adds the shared option block to `command(ctx, args, ...)`. Its own parameters (arguments, options
    only it has or describes its own way) come first in --help and are passed to it as usual; every value
    whose name is an ImageArgs field, its own or shared, is also in `args`."""
    own = inspect.signature(command, eval_str=True)
    ctx_param, _args_param, *rest = own.parameters.values()
    declared = {p.name for p in rest}
    shared = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=annotation,
            default=None if name in _LISTS else _ARG_DEFAULTS[name],
        )
        for name, annotation in SHARED_OPTIONS.items()
        if name not in declared
    ]
    parameters = [ctx_param, *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest), *shared]

    @functools.wraps(command)
    def with_options(ctx: typer.Context, **values: Any) -> None:
        for name in _LISTS:
            values[name] = tuple(values.get(name) or ())
        args = ImageArgs(
            **{name: value for name, value in values.items() if name in _ARG_DEFAULTS},
            given=given_from(ctx, "COMMANDLINE"),
            defaulted=given_from(ctx, "DEFAULT"),
        )
        ctx.meta["sdcli.debug"] = args.debug or ctx.meta.get("sdcli.debug", False)
        command(ctx, args, **{name: value for name, value in values.items() if name in declared})

    with_options.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_options
