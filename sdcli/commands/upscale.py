"""`sdcli upscale IMAGE...`: enlarge images as A1111's Extras tab does, their metadata carried over.

The images' generation parameters stay what made them (`--from` re-makes the original); the upscale is
recorded next to them, as A1111's `postprocessing` text and an `upscale` entry in the sdcli record.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from sdcli.commands import options as opt
from sdcli.commands.console import Output
from sdcli.errors import ExitCode, UsageError

Scale = Annotated[
    float | None,
    typer.Option(
        "--scale",
        help="Upscale by this factor (default: the model's own; Lanczos: 2). A model runs again "
        "on its output, up to 3 times, until the image is that large; Lanczos takes it to the exact size.",
    ),
]
Width = Annotated[
    int | None,
    typer.Option("--width", "-W", help="Output width in pixels (alone: the height keeps the aspect ratio)."),
]
Height = Annotated[
    int | None,
    typer.Option("--height", "-H", help="Output height in pixels (alone: the width keeps the aspect ratio)."),
]
UpscalerOption = Annotated[
    str,
    typer.Option(
        "--upscaler",
        "-u",
        help="lanczos (Pillow), an ESRGAN-family .safetensors/.pth file (Real-ESRGAN, 4x-UltraSharp; "
        "needs sdcli[upscale]), or a diffusers upscaler folder or Hub id "
        "(stabilityai/stable-diffusion-x4-upscaler, stabilityai/sd-x2-latent-upscaler).",
    ),
]
Prompt = Annotated[
    str | None,
    typer.Option(
        "--prompt", "-p", help="Diffusers upscalers: the prompt (default: the image's own, if any)."
    ),
]
UpscaleSteps = Annotated[int, typer.Option("--steps", "-s", help="Diffusers upscalers: denoising steps.")]
UpscaleGuidance = Annotated[
    float | None,
    typer.Option(
        "--guidance", "--cfg", "-g", help="Diffusers upscalers: guidance scale (default: theirs, 9)."
    ),
]
NoiseLevel = Annotated[
    int,
    typer.Option(
        "--noise-level", help="The x4 upscaler: noise added to the input, 0-350 (more: more invented)."
    ),
]
UpscaleSeed = Annotated[
    int | None, typer.Option(help="Diffusers upscalers: the seed (default: random, always recorded).")
]
UpscaleOutput = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        envvar="SDCLI_OUTPUT",
        help="Folder, or file-name template with {input} {date} {time} {model}. "
        "Default: outputs/{date}-{time}-{input}-upscaled.png",
    ),
]


def upscale(
    ctx: typer.Context,
    images: opt.InputImages,
    scale: Scale = None,
    width: Width = None,
    height: Height = None,
    upscaler: UpscalerOption = "lanczos",
    prompt: Prompt = None,
    negative: opt.Negative = "",
    steps: UpscaleSteps = 20,
    guidance: UpscaleGuidance = None,
    noise_level: NoiseLevel = 20,
    seed: UpscaleSeed = None,
    output: UpscaleOutput = None,
    overwrite: opt.Overwrite = False,
    no_metadata: opt.NoMetadata = False,
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    offline: opt.Offline = False,
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Upscale images; each output is named after its input and keeps its metadata.

    A bad input is reported on one line and skipped; the run goes on and exits 2 at the end.
    """
    out = Output(quiet=quiet, json=json_)
    ctx.meta["sdcli.debug"] = debug or ctx.meta.get("sdcli.debug", False)
    from sdcli.generation import upscale_runs
    from sdcli.generation.upscaling import ModelOptions

    if offline:
        from sdcli.hub.settings import set_offline

        set_offline()
    began = time.perf_counter()
    request = upscale_runs.UpscaleRequest(
        images,
        upscaler,
        scale,
        width,
        height,
        output,
        overwrite,
        not no_metadata,
        device,
        dtype,
        ModelOptions(prompt, negative, steps, guidance, noise_level, seed),
    )
    plan = upscale_runs.plan(request)
    for problem in plan.problems:
        out.error(problem.message)
    if not plan.work:
        raise typer.Exit(int(ExitCode.USAGE))
    failed = len(plan.problems)
    written = 0
    for result in upscale_runs.run(plan):
        if isinstance(result, UsageError):
            out.error(result.message)
            failed += 1
        elif json_:
            out.data(result.as_json())
            written += 1
        else:
            out.result(str(result.path))
            written += 1
    seconds = time.perf_counter() - began
    if json_:
        out.data({"type": "summary", "images": written, "failures": failed, "seconds": round(seconds, 3)})
    out.info(f"{written} image(s) upscaled in {seconds:.1f}s")
    if failed:
        raise UsageError(f"{failed} input(s) could not be used (named above); the others were written")
