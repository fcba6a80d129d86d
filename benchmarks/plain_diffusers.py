"""The plain diffusers script that sdcli is measured against, written the way the diffusers docs show it:
import, `from_pretrained`, `.to(device)`, call, `.images[0].save(...)`; a loop for several prompts.

    python benchmarks/plain_diffusers.py MODEL_FOLDER "a cat" --steps 2 --seed 1 --out cat.png
    python benchmarks/plain_diffusers.py MODEL_FOLDER --prompts-file prompts.txt --out folder/

`--loader auto` (default) uses AutoPipelineForText2Image, as the text-to-image docs do; `--loader class`
imports the concrete StableDiffusionPipeline, as older docs and most model cards do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("prompt", nargs="?")
parser.add_argument("--prompts-file")
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--guidance", type=float, default=7.0)
parser.add_argument("--width", type=int)
parser.add_argument("--height", type=int)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--device", default="cuda")
parser.add_argument("--out", default="out.png")
parser.add_argument("--loader", choices=("auto", "class"), default="auto")
args = parser.parse_args()

import torch  # noqa: E402

if args.loader == "auto":
    from diffusers import AutoPipelineForText2Image as Pipeline
else:
    from diffusers import StableDiffusionPipeline as Pipeline

dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
pipe = Pipeline.from_pretrained(args.model, dtype=dtype, use_safetensors=True).to(args.device)

if args.prompts_file:
    prompts = [line.strip() for line in Path(args.prompts_file).read_text().splitlines() if line.strip()]
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:03d}.png" for i in range(len(prompts))]
else:
    prompts, paths = [args.prompt], [Path(args.out)]

for i, (prompt, path) in enumerate(zip(prompts, paths, strict=True)):
    image = pipe(
        prompt,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        width=args.width,
        height=args.height,
        generator=torch.Generator("cpu").manual_seed(args.seed + i),
    ).images[0]
    image.save(path)
