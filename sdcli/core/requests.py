"""What the user asked for, as frozen dataclasses validated before any model loads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sdcli.core import specs
from sdcli.core.control_specs import ControlNetSpec
from sdcli.core.ip_adapter_specs import IPAdapterSpec
from sdcli.core.specs import EmbeddingSpec, LoraSpec
from sdcli.errors import UsageError

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
# Old names of the same weights: the runwayml repo was removed from the Hub in 2024.
MODEL_ALIASES = {"runwayml/stable-diffusion-v1-5": DEFAULT_MODEL}
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "fp16", "bf16", "fp32")
MAX_SEED = 2**32 - 1  # A1111 and most UIs use 32-bit seeds; keep ours interchangeable
# Upper bounds, so a typo fails at once instead of allocating until the OOM killer comes (README, exit codes).
MAX_STEPS = 1000  # SD's schedulers have 1000 training timesteps, and some (DDIM) refuse more steps
MAX_COUNT = 10_000  # images per prompt: every file name is planned (and checked free) before loading
MAX_SIZE = 8192  # pixels per side, 16x SD 1.5's own 512: attention memory grows with its fourth power


OFFLOAD_MODES = ("none", "model", "sequential")
WEIGHTINGS = ("a1111", "none")  # prompt attention syntax: A1111's `(word:1.3)`, or the text as typed
# latent: nearest-neighbour on the latents; lanczos: on the pixels. Any other value names an upscaler model,
# which sdcli/images/upscale.py checks (core cannot look at files).
HIRES_UPSCALERS = ("latent", "lanczos")
REFINER_SWITCH = 0.8  # A1111's default "Refiner switch at"


@dataclass(frozen=True)
class MemoryOptions:
    """Speed/memory trade-offs applied to a loaded pipeline; all recorded in the image's metadata."""

    offload: str = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False
    attention_slicing: bool = False
    channels_last: bool = False
    compile: bool = False
    tiny_vae: str | None = None  # a local folder or cached Hub id of an AutoencoderTiny
    oom_retry: bool = False

    @classmethod
    def low_vram(cls, **overrides: Any) -> MemoryOptions:
        """What a small GPU needs, spelled out as the individual settings."""
        return cls(**{"offload": "model", "vae_tiling": True, "vae_slicing": True, **overrides})

    def validated(self) -> MemoryOptions:
        if self.offload not in OFFLOAD_MODES:
            raise UsageError(f"--offload {self.offload!r} is not one of {', '.join(OFFLOAD_MODES)}")
        return self

    def as_record(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "oom_retry"}


@dataclass(frozen=True)
class ModelRequest:
    """Which weights to load and how to place them: shared by every command that runs a pipeline."""

    model: str = DEFAULT_MODEL
    revision: str | None = None
    variant: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    scheduler: str | None = None
    schedule: str | None = None
    memory: MemoryOptions = MemoryOptions()
    safety_checker: bool = True
    rng: str = "cpu"  # "cpu": seeds mean the same image on any device; "device": the device's own generator
    scheduler_state: tuple[str, dict[str, Any]] | None = None  # exact class + config, from --from IMAGE
    config: str | None = None  # single-file checkpoints: diffusers folder or Hub id with the configs
    allow_pickle: bool = False  # read .ckpt/.pt/.bin/.pth weights (tensors only)
    loras: tuple[LoraSpec, ...] = ()
    embeddings: tuple[EmbeddingSpec, ...] = ()
    quantize: str | None = None  # a sdcli.model.quantization scheme name: bnb-4bit, torchao-int8, ...
    controlnets: tuple[ControlNetSpec, ...] = ()  # parsed and checked by control_specs.parse_all
    control_preprocess: str = "none"  # how each control image becomes its control map: none, canny, depth
    depth_model: str | None = None  # depth's estimator (folder or Hub id); None: DEFAULT_DEPTH_MODEL
    ip_adapters: tuple[IPAdapterSpec, ...] = ()  # parsed and checked by ip_adapter_specs.parse_all
    ip_image_encoder: str | None = None  # None: the `image_encoder` folder beside the adapter or its parent
    # SDXL's ensemble of experts: a second SDXL model (refiner or base) that runs the last steps. Loaded with
    # the same device, dtype and variant; no LoRAs or embeddings (A1111 applies them to the base only).
    refiner: str | None = None

    def validated(self) -> ModelRequest:
        model = MODEL_ALIASES.get(self.model, self.model)
        if not model.strip():
            raise UsageError("--model is empty")
        base = self.device.split(":", 1)[0]
        if base not in DEVICES or (":" in self.device and not self.device.split(":", 1)[1].isdigit()):
            raise UsageError(
                f"--device {self.device!r} is not a device", hint="use auto, cpu, cuda, cuda:N or mps"
            )
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.rng not in ("cpu", "device"):
            raise UsageError(f"--rng {self.rng!r} is not one of cpu, device")
        specs.refuse_pickle(model, self.allow_pickle, "--model")
        specs.validated(self.loras, self.embeddings, self.allow_pickle)
        if self.refiner is not None:
            self.check_refiner(self.refiner)
        return replace(self, model=model, memory=self.memory.validated())

    def check_refiner(self, refiner: str) -> None:
        from pathlib import Path

        if not refiner.strip():
            raise UsageError("--refiner is empty")
        specs.refuse_pickle(refiner, self.allow_pickle, "--refiner")
        looks_local = refiner.startswith((".", "/", "~")) or specs.is_checkpoint_name(refiner)
        if looks_local and not Path(refiner).expanduser().exists():
            raise UsageError(f"--refiner {refiner}: no such file or folder")
        if self.controlnets:  # diffusers' SDXL ControlNet pipelines cannot stop at denoising_end
            raise UsageError("--refiner and --controlnet do not combine", hint="drop one of them")


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt's worth of images: image i of the run gets seed `seed + i`."""

    prompt: str
    negative: str = ""
    steps: int = 30
    guidance: float = 7.0
    width: int | None = None  # None: the model's native size
    height: int | None = None
    seed: int | None = None  # None: a random seed, drawn once and recorded
    count: int = 1
    batch_size: int = 1
    strength: float | None = None  # img2img / inpaint only
    first_index: int = 0  # index of this request's first image within its run (one image per process share)
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the image's metadata as it is
    clip_skip: int = 1  # A1111 numbering: 1 = the text encoder's last layer
    weighting: str = "a1111"
    long_prompts: bool = True  # False: cut prompts at the text encoder's 75 tokens, with a warning
    # Parameters left at sdcli's (SD) defaults, which a model family may replace with its own (FLUX.1: 28
    # steps, distilled guidance 3.5); a value from a flag, the environment, a config file or --from is kept.
    defaulted: frozenset[str] = frozenset()
    # A1111's hires fix (generate only): a second, img2img pass at hires_scale times the size. Flat fields,
    # so that the worker protocol's asdict round trip carries them as they are.
    hires_scale: float | None = None  # None: no hires fix
    hires_steps: int = 0  # 0: the same as steps (A1111's default)
    hires_strength: float = 0.7  # A1111's "Denoising strength" of the second pass
    hires_upscaler: str = "latent"
    # With a refiner (ModelRequest.refiner): the fraction of the steps after which it takes over, A1111's
    # "Refiner switch at" (see refiner_denoising). None: no refiner. generate and img2img only.
    refiner_switch: float | None = None

    def validated(self) -> GenerationRequest:
        check_text("the prompt", self.prompt)
        check_text("--negative", self.negative)
        for name, value in (("--width", self.width), ("--height", self.height)):
            if value is not None and (value <= 0 or value % 8):
                raise UsageError(f"{name} must be a positive multiple of 8, got {value}")
            if value is not None and value > MAX_SIZE:
                raise UsageError(f"{name} must be at most {MAX_SIZE}, got {value}")
        if self.steps < 1:
            raise UsageError(f"--steps must be at least 1, got {self.steps}")
        if self.count < 1:
            raise UsageError(f"--count must be at least 1, got {self.count}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        for name, value, most in (
            ("--steps", self.steps, MAX_STEPS),
            ("--count", self.count, MAX_COUNT),
            ("--batch-size", self.batch_size, MAX_COUNT),
        ):
            if value > most:
                hint = "for more images, run again from the next --seed" if name == "--count" else None
                raise UsageError(f"{name} must be at most {most}, got {value}", hint=hint)
        for name, number in (("--guidance", self.guidance), ("--strength", self.strength)):
            if number is not None and not math.isfinite(number):
                raise UsageError(f"{name} must be a finite number, got {number}")
        if self.guidance < 0:
            raise UsageError(f"--guidance must be 0 or more, got {self.guidance:g}")
        if self.strength is not None and not 0 < self.strength <= 1:
            raise UsageError(f"--strength must be in (0, 1], got {self.strength:g}")
        # diffusers runs int(steps * strength) steps and fails on 0, after the model has loaded.
        if self.strength is not None and int(self.steps * self.strength) < 1:
            raise UsageError(
                f"--strength {self.strength:g} of --steps {self.steps} runs no denoising step",
                hint=f"use at least --steps {math.ceil(1 / self.strength)}, or a higher --strength",
            )
        if self.clip_skip < 1:
            raise UsageError(f"--clip-skip must be at least 1 (1 = last layer), got {self.clip_skip}")
        if self.weighting not in WEIGHTINGS:
            raise UsageError(f"--weighting {self.weighting!r} is not one of {', '.join(WEIGHTINGS)}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"--seed must be between 0 and {MAX_SEED}, got {self.seed}")
        if self.hires_scale is not None:
            self.check_hires(self.width, self.height)
        if self.refiner_switch is not None:
            self.check_refiner_switch()
        import secrets

        seed = secrets.randbelow(MAX_SEED - self.count) if self.seed is None else self.seed
        return replace(self, seed=seed)

    def hires_size(self, width: int, height: int) -> tuple[int, int]:
        """The second pass's size: the first pass's times hires_scale, cut to a multiple of 8."""
        assert self.hires_scale is not None
        return int(width * self.hires_scale) // 8 * 8, int(height * self.hires_scale) // 8 * 8

    def hires_schedule(self) -> tuple[int, float]:
        """The second pass's (num_inference_steps, strength) for diffusers, as A1111 runs it: exactly
        `hires_steps` (or `steps`) steps, the last ones of a schedule of int(steps / strength) steps
        (modules/sd_samplers_common.py setup_img2img_steps: the hires pass always asks for its steps)."""
        steps = self.hires_steps or self.steps
        total = max(int(steps / min(self.hires_strength, 0.999)), steps)
        # diffusers runs int(total * strength) steps, the schedule's last: half a step over, against rounding.
        return total, min(1.0, (steps + 0.5) / total)

    def check_hires(self, width: int | None, height: int | None) -> None:
        """The hires options; the final size only where the first pass's is known (else after loading)."""
        scale = self.hires_scale
        assert scale is not None
        if not math.isfinite(scale) or scale <= 1:
            raise UsageError(f"--hires-scale must be a finite number above 1, got {scale:g}")
        if not 0 <= self.hires_steps <= MAX_STEPS:
            raise UsageError(f"--hires-steps must be between 0 and {MAX_STEPS}, got {self.hires_steps}")
        strength = self.hires_strength
        if not math.isfinite(strength) or not 0 < strength <= 1:
            raise UsageError(f"--hires-strength must be in (0, 1], got {strength:g}")
        if not self.hires_upscaler.strip():
            raise UsageError(
                "--hires-upscaler is empty", hint=f"use {', '.join(HIRES_UPSCALERS)} or an upscaler model"
            )
        if width is not None and height is not None:
            final_w, final_h = self.hires_size(width, height)
            if max(final_w, final_h) > MAX_SIZE:
                raise UsageError(
                    f"--hires-scale {scale:g} makes {width}x{height} into {final_w}x{final_h}, "
                    f"over the {MAX_SIZE} px limit",
                    hint=f"use at most --hires-scale {MAX_SIZE / max(width, height):g}",
                )

    def check_refiner_switch(self) -> None:
        switch = self.refiner_switch
        assert switch is not None
        if not math.isfinite(switch) or not 0 < switch < 1:
            raise UsageError(f"--refiner-switch must be between 0 and 1 (exclusive), got {switch:g}")
        # A1111 runs the hires pass with the refiner loaded; sdcli keeps the two apart rather than guess.
        if self.hires_scale is not None:
            raise UsageError("--refiner and the hires fix (--hires-scale) do not combine", hint="drop one")

    def refiner_denoising(self) -> float:
        """diffusers' denoising_end (the base's) and denoising_start (the refiner's): a fraction of the whole
        schedule. A1111's switch is a fraction of the steps that run, and img2img runs only the last
        `strength` of the schedule, so there the switch comes that far into those."""
        switch = REFINER_SWITCH if self.refiner_switch is None else self.refiner_switch
        return switch if self.strength is None else 1 - self.strength * (1 - switch)

    @property
    def seeds(self) -> list[int]:
        assert self.seed is not None, "validated() draws the seed"
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.count)]


def check_text(name: str, text: str) -> None:
    """Text that is not valid UTF-8 (bytes from argv or a file, kept as surrogates) fails here, not when the
    PNG's metadata is written after the model loaded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        chars = exc.object[exc.start : exc.end]
        try:  # the bytes, as the terminal or file had them
            raw = repr(chars.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:  # a lone surrogate that was never a byte
            raw = ascii(chars)
        raise UsageError(
            f"{name} is not valid UTF-8 text ({raw} at character {exc.start})",
            hint="check the terminal's or the file's encoding",
        ) from None
