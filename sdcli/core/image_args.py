"""Every option the image commands (generate, img2img, inpaint) share, as one typed value.

The commands' Typer signatures declare these options once (`commands/options.py`, `image_options`), and the
values arrive here; `--from IMAGE` replaces the fields the command line did not give (`remake.apply`).
The request builders turn them into the validated requests the lower layers run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sdcli.core import control_specs, ip_adapter_specs
from sdcli.core.requests import DEFAULT_MODEL, REFINER_SWITCH, GenerationRequest, MemoryOptions, ModelRequest
from sdcli.core.specs import EmbeddingSpec, LoraSpec
from sdcli.errors import UsageError


@dataclass(frozen=True)
class ImageArgs:
    prompt: str | None = None  # "-": read from stdin; None: a prompts file gives one per line
    negative: str = ""
    from_: Path | None = None
    model: str = DEFAULT_MODEL
    revision: str | None = None
    variant: str | None = None
    config: str | None = None
    allow_pickle: bool = False
    lora: tuple[str, ...] = ()
    embedding: tuple[str, ...] = ()
    controlnet: tuple[str, ...] = ()  # MODEL:IMAGE[:SCALE[:START:END]]
    control_preprocess: str = "none"
    depth_model: str | None = None
    ip_adapter: tuple[str, ...] = ()  # MODEL[:SCALE]
    ip_image: tuple[str, ...] = ()  # one reference image per --ip-adapter
    ip_image_encoder: str | None = None
    scheduler: str | None = None
    schedule: str | None = None
    clip_skip: int = 1
    weighting: str = "a1111"
    no_long_prompts: bool = False
    steps: int = 30
    guidance: float = 7.0
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    count: int = 1
    batch_size: int = 1
    strength: float | None = None  # img2img and inpaint only
    hires_scale: float | None = None  # generate only: A1111's hires fix (None: off)
    hires_steps: int = 0
    hires_strength: float = 0.7
    hires_upscaler: str = "latent"
    refiner: str | None = None  # generate and img2img: an SDXL refiner that runs the steps after the switch
    refiner_switch: float = REFINER_SWITCH
    device: str = "auto"
    dtype: str = "auto"
    rng: str = "cpu"
    offload: str = "none"
    low_vram: bool = False
    vae_tiling: bool = False
    vae_slicing: bool = False
    attention_slicing: bool = False
    channels_last: bool = False
    compile: bool = False
    tiny_vae: str | None = None
    quantize: str | None = None  # a scheme name: bnb-4bit, torchao-int8, ...
    oom_retry: bool = False
    no_safety_checker: bool = False
    keep_filtered: bool = False
    output: str | None = None
    overwrite: bool = False
    no_metadata: bool = False
    json_: bool = False
    quiet: bool = False
    offline: bool = False
    debug: bool = False
    no_worker: bool = False  # run here even when `sdcli serve` is up
    given: frozenset[str] = field(default=frozenset(), compare=False)  # options the command line gave
    # Options left at sdcli's own default (no flag, variable, config file or --from), which a model family
    # may replace with its own: FLUX.1-dev's 28 steps, say.
    defaulted: frozenset[str] = field(default=frozenset(), compare=False)
    scheduler_state: tuple[str, dict[str, Any]] | None = None  # exact class + config, from --from IMAGE

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls)) - {"given", "defaulted", "scheduler_state"}

    def read_prompt(self) -> str:
        prompt = self.prompt
        if prompt == "-":
            try:
                prompt = sys.stdin.read().strip()
            except UnicodeDecodeError as exc:
                raise UsageError(f"the prompt on stdin is not valid UTF-8 text ({exc.reason})") from None
        if not prompt:
            raise UsageError(
                "no prompt given", hint='sdcli generate "a cat wearing a hat" (or - to read stdin)'
            )
        return prompt

    def memory(self) -> MemoryOptions:
        # ImageArgs holds MemoryOptions' fields under the same names.
        chosen: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(MemoryOptions)}
        if self.low_vram:  # --low-vram sets what it needs; what the user set on top of it still counts
            return MemoryOptions.low_vram(
                **{k: v for k, v in chosen.items() if v not in (False, None, "none")}
            )
        return MemoryOptions(**chosen)

    def model_request(self) -> ModelRequest:
        if self.refiner is None and "refiner_switch" in self.given:
            raise UsageError("--refiner-switch needs --refiner MODEL")
        return ModelRequest(
            model=self.model,
            revision=self.revision,
            variant=self.variant,
            device=self.device,
            dtype=self.dtype,
            scheduler=self.scheduler,
            schedule=self.schedule,
            memory=self.memory(),
            safety_checker=not self.no_safety_checker,
            rng=self.rng,
            scheduler_state=self.scheduler_state,
            config=self.config,
            allow_pickle=self.allow_pickle,
            quantize=self.quantize,
            loras=tuple(LoraSpec.parse(text) for text in self.lora),
            embeddings=tuple(EmbeddingSpec.parse(text) for text in self.embedding),
            controlnets=control_specs.parse_all(
                self.controlnet, self.control_preprocess, self.allow_pickle, self.depth_model
            ),
            control_preprocess=self.control_preprocess,
            depth_model=self.depth_model,
            ip_adapters=ip_adapter_specs.parse_all(
                self.ip_adapter, self.ip_image, self.ip_image_encoder, self.allow_pickle
            ),
            ip_image_encoder=self.ip_image_encoder,
            refiner=self.refiner,
        ).validated()

    def generation_request(self, prompt: str | None = None) -> GenerationRequest:
        """The prompt as given (read from stdin for "-"), or `prompt` (a prompts file's placeholder)."""
        return GenerationRequest(
            prompt=self.read_prompt() if prompt is None else prompt,
            negative=self.negative,
            steps=self.steps,
            guidance=self.guidance,
            width=self.width,
            height=self.height,
            seed=self.seed,
            count=self.count,
            batch_size=self.batch_size,
            strength=self.strength,
            clip_skip=self.clip_skip,
            weighting=self.weighting,
            long_prompts=not self.no_long_prompts,
            defaulted=self.defaulted & {"steps", "guidance"},
            hires_scale=self.hires_scale,
            hires_steps=self.hires_steps,
            hires_strength=self.hires_strength,
            hires_upscaler=self.hires_upscaler,
            refiner_switch=self.refiner_switch if self.refiner is not None else None,
        ).validated()
