"""GPU throughput and memory: sdcli vs plain diffusers on full-size SD 1.5 and SDXL-architecture pipelines.

    python benchmarks/bench_gpu.py                       # on a CUDA GPU: SD 1.5 at 512, SDXL at 1024, fp16
    python benchmarks/bench_gpu.py --families sd15 --configs plain,sdcli,sdcli-compile
    python benchmarks/bench_gpu.py --device cpu --tiny   # smoke mode: tiny configs, seconds, no GPU needed

The pipelines have random weights built from the published architectures (configs inline below), saved once
with save_pretrained in fp16 and loaded back from that folder by both sides, so nothing is downloaded. The
tokenizer is sdcli.diagnostics.tiny's byte-level CLIP tokenizer (ids fit the 49408-token vocabulary): it
changes what the text encoder reads, not how much work it does.

Configs (`--configs`), each in a fresh process by default (so compile caches and memory peaks stay apart):

  plain                AutoPipelineForText2Image.from_pretrained(folder, dtype=...).to(device), then
                       pipe(...).images[0].save(...) per image
  plain-compile        the same plus unet.to(channels_last), unet.compile_repeated_blocks(fullgraph=True)
  sdcli                sdcli's own loading, engine and writer (pipelines.load_model + jobs.run)
  sdcli-channels-last  sdcli --channels-last
  sdcli-compile        sdcli --compile --channels-last
  sdcli-low-vram       sdcli --low-vram (model offload, VAE tiling and slicing)

Per config: load seconds, first-image seconds (compile warm-up shows here), steady-state seconds per image
over `--images` images after `--warmup` (the gap between images written to disk, save included) and
end-to-end it/s = steps / that gap, and peak GPU memory (torch.cuda.max_memory_allocated). Targets:
sdcli >= 1.0x plain diffusers' it/s by default; sdcli --compile >= 1.5x plain diffusers' it/s on batches.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit as bk  # noqa: E402

CONFIGS = ("plain", "plain-compile", "sdcli", "sdcli-channels-last", "sdcli-compile", "sdcli-low-vram")
PROMPT = "a photograph of an astronaut riding a horse"
SDXL_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "use_karras_sigmas": False,
}

# --- the published architectures, with random weights ------------------------------------------------------


def sd15_unet() -> dict[str, Any]:
    return dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=(
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
    )


def sdxl_unet() -> dict[str, Any]:
    return dict(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        cross_attention_dim=2048,
        attention_head_dim=(5, 10, 20),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )


def vae(sample_size: int, scaling_factor: float) -> dict[str, Any]:
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
    )


def clip_text(hidden: int, layers: int, heads: int, intermediate: int, act: str) -> dict[str, Any]:
    return dict(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=hidden,
        bos_token_id=0,  # the byte-level tokenizer's <|startoftext|> and <|endoftext|>
        eos_token_id=1,
        pad_token_id=1,
    )


def build(family: str, tiny: bool, device: str) -> Any:
    """A random-weight pipeline of the family's published shape (or sdcli.diagnostics.tiny's for --tiny)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sdcli.diagnostics import tiny as tiny_module

    if tiny:
        return tiny_module.build_tiny_pipeline(tiny_module.TinySpec("sdxl" if family == "sdxl" else "sd"))
    torch.manual_seed(0)
    # Initialise on the GPU when there is one: SDXL's 2.6 B parameters take minutes to initialise on a CPU.
    with torch.device(device if device.startswith("cuda") else "cpu"):
        if family == "sd15":
            return StableDiffusionPipeline(
                unet=UNet2DConditionModel(**sd15_unet()),
                vae=AutoencoderKL(**vae(512, 0.18215)),
                text_encoder=CLIPTextModel(CLIPTextConfig(**clip_text(768, 12, 12, 3072, "quick_gelu"))),
                tokenizer=tiny_module._tokenizer(),
                scheduler=PNDMScheduler.from_config(tiny_module.SD15_SCHEDULER),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        return StableDiffusionXLPipeline(
            unet=UNet2DConditionModel(**sdxl_unet()),
            vae=AutoencoderKL(**vae(1024, 0.13025)),
            text_encoder=CLIPTextModel(CLIPTextConfig(**clip_text(768, 12, 12, 3072, "quick_gelu"))),
            text_encoder_2=CLIPTextModelWithProjection(
                CLIPTextConfig(**clip_text(1280, 32, 20, 5120, "gelu"))
            ),
            tokenizer=tiny_module._tokenizer(),
            tokenizer_2=tiny_module._tokenizer(),
            scheduler=EulerDiscreteScheduler.from_config(SDXL_SCHEDULER),
        )


def ensure_pipeline(family: str, tiny: bool, device: str, root: Path) -> Path:
    import torch

    folder = root / f"{family}{'-tiny' if tiny else ''}-fp16"
    if (folder / "model_index.json").is_file():
        return folder
    bk.note(f"building the random-weight {family} pipeline in {folder} ...")
    pipe = build(family, tiny, device)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
    pipe.to(torch.float16).save_pretrained(tmp / "model")
    os.replace(tmp / "model", folder)
    tmp.rmdir()
    del pipe
    free(device)
    return folder


# --- one config --------------------------------------------------------------------------------------------


def free(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def dtype_name(device: str) -> str:
    return "fp16" if device.startswith("cuda") else "fp32"


def measure(config: str, folder: Path, device: str, steps: int, images: int, warmup: int, out: Path) -> dict:
    """Load, make and save `warmup + images` images (one prompt, seeds 1, 2, ...): timings, peak memory."""
    import torch

    free(device)
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[dtype_name(device)]
    total = warmup + images
    done: list[float] = []  # perf_counter when each image was on disk
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    if config.startswith("plain"):
        from diffusers import AutoPipelineForText2Image

        pipe = AutoPipelineForText2Image.from_pretrained(folder, dtype=dtype, use_safetensors=True).to(device)
        pipe.set_progress_bar_config(disable=True)
        if config == "plain-compile":
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.unet.compile_repeated_blocks(fullgraph=True)
        sync(device)
        loaded = time.perf_counter()
        for i in range(total):
            generator = torch.Generator("cpu").manual_seed(1 + i)
            pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.0, generator=generator).images[0].save(
                out / f"{1 + i}.png"
            )
            done.append(time.perf_counter())
    else:
        from sdcli.core.requests import GenerationRequest, MemoryOptions, ModelRequest
        from sdcli.generation import jobs
        from sdcli.images import outputs
        from sdcli.model import pipelines

        flags = {
            "sdcli": MemoryOptions(),
            "sdcli-channels-last": MemoryOptions(channels_last=True),
            "sdcli-compile": MemoryOptions(compile=True, channels_last=True),
            "sdcli-low-vram": MemoryOptions.low_vram(),
        }[config]
        request = ModelRequest(model=str(folder), device=device, dtype=dtype_name(device), memory=flags)
        model = pipelines.load_model(request)
        sync(device)
        loaded = time.perf_counter()
        generation = GenerationRequest(PROMPT, steps=steps, guidance=7.0, seed=1, count=total).validated()
        plan = outputs.plan(str(out / "{seed}.png"), count=total, overwrite=True)
        work = [jobs.Job(generation, jobs.planned_paths(plan, generation, folder.name, datetime.now()))]
        for _ in jobs.run(model, work, plan):
            done.append(time.perf_counter())
        pipe = model.pipe
    gaps = [b - a for a, b in zip(done, done[1:], strict=False)][max(warmup - 1, 0) :]
    per_image = statistics.median(gaps) if gaps else float("nan")
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    return {
        "config": config,
        "load_s": loaded - began,
        "first_image_s": done[0] - loaded,
        "per_image_s": per_image,
        "it_per_s": steps / per_image if per_image == per_image else float("nan"),
        "peak_gib": peak / 2**30 if peak is not None else None,
        "images": len(done),
        # The VAE's dtype after the run: plain SD 1.x decodes in fp16, sdcli in fp32 when the VAE's config
        # says force_upcast (as SDXL pipelines do): a per-image difference worth seeing next to the timings.
        "vae_dtype": str(pipe.vae.dtype).removeprefix("torch."),
    }


def run_config(args: argparse.Namespace, config: str, folder: Path, out: Path) -> dict:
    """In this process (--in-process, the default with --tiny) or in a fresh one."""
    if args.in_process:
        return measure(config, folder, args.device, args.steps, args.images, args.warmup, out)
    argv = [bk.PY, __file__, "--child", config, "--child-folder", str(folder), "--child-out", str(out)]
    argv += ["--device", args.device, "--steps", str(args.steps), "--images", str(args.images)]
    argv += ["--warmup", str(args.warmup)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=bk.child_env())
    if proc.returncode != 0:
        raise RuntimeError(f"{config} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# --- report ------------------------------------------------------------------------------------------------


def report(family: str, results: dict[str, list[dict]], steps: int) -> str:
    def med(config: str, key: str) -> float:
        values = [r[key] for r in results.get(config, []) if r[key] is not None]
        return statistics.median(values) if values else float("nan")

    head = ["config", "load s", "first image s", "s/image", "it/s", "vs plain", "peak GiB", "VAE decoded in"]
    rows = []
    base = med("plain", "it_per_s")
    for config in results:
        its = med(config, "it_per_s")
        peak = med(config, "peak_gib")
        ratio = f"{its / base:.3f}x" if base == base else ""
        memory = f"{peak:.2f}" if peak == peak else "n/a"
        seconds = [f"{med(config, key):.2f}" for key in ("load_s", "first_image_s")]
        vae = ", ".join(sorted({r["vae_dtype"] for r in results[config]}))
        rows.append([config, *seconds, f"{med(config, 'per_image_s'):.3f}", f"{its:.2f}", ratio, memory, vae])
    text = [bk.plain_table(f"{family}: {steps} steps, guidance 7 (medians)", head, rows)]
    checks = [("sdcli", 1.0, "default"), ("sdcli-compile", 1.5, "--compile --channels-last")]
    for config, target, what in checks:
        if config in results and "plain" in results:
            ratio = med(config, "it_per_s") / base
            verdict = "ok" if ratio >= target else "MISSED"
            text.append(f"sdcli {what}: {ratio:.3f}x plain diffusers it/s (target >= {target}x) {verdict}")
    if (
        "sdcli-low-vram" in results
        and "sdcli" in results
        and med("sdcli", "peak_gib") == med("sdcli", "peak_gib")
    ):
        low, default = med("sdcli-low-vram", "peak_gib"), med("sdcli", "peak_gib")
        text.append(f"--low-vram peak {low:.2f} GiB vs {default:.2f} GiB without ({low / default:.2f}x)")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny random pipelines (smoke mode)")
    parser.add_argument("--families", default="sd15,sdxl")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--images", type=int, default=6, help="images timed after the warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="images made first and not timed")
    parser.add_argument("--reps", type=int, default=2, help="fresh runs of each config, interleaved")
    parser.add_argument("--models", type=Path, help="where the built pipelines are kept")
    parser.add_argument("--in-process", action="store_true", help="all configs in this process")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child = (
            args.child,
            args.child_folder,
            args.device,
            args.steps,
            args.images,
            args.warmup,
            args.child_out,
        )
        result = measure(*child)
        print(json.dumps(result))
        return 0
    if args.tiny:
        args.in_process = True
        args.steps, args.images, args.warmup, args.reps = min(args.steps, 2), min(args.images, 2), 1, 1
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not args.device.startswith("cuda"):
        # torch.compile on a CPU needs a C++ toolchain and minutes; the smoke mode checks the plumbing only.
        configs = [c for c in configs if "compile" not in c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown config(s): {', '.join(sorted(unknown))}")
    print(f"Machine: {bk.machine()}")
    if args.device.startswith("cuda"):
        import torch

        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print()
    root = args.models or (bk.model_cache() / "gpu")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sdcli-gpu-bench-") as tmp:
        for family in [f.strip() for f in args.families.split(",") if f.strip()]:
            folder = ensure_pipeline(family, args.tiny, args.device, root)
            results: dict[str, list[dict]] = {c: [] for c in configs}
            for rep in range(args.reps):
                for config in configs if rep % 2 == 0 else configs[::-1]:
                    result = run_config(args, config, folder, Path(tmp) / f"{family}-{config}-{rep}")
                    results[config].append(result)
                    bk.note(f"{family} {config} rep {rep + 1}: {result['it_per_s']:.2f} it/s")
            print(report(family, results, args.steps) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
