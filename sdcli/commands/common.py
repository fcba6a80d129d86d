"""Pieces every image command shares: parameters -> requests, and the write-and-report loop."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from sdcli.adapters import EmbeddingSpec, LoraSpec
from sdcli.console import Output
from sdcli.errors import CheckFailed, UsageError
from sdcli.requests import GenerationRequest, MemoryOptions, ModelRequest


def read_prompt(prompt: str | None) -> str:
    if prompt == "-":
        prompt = sys.stdin.read().strip()
    if not prompt:
        raise UsageError("no prompt given", hint='sdcli generate "a cat wearing a hat" (or - to read stdin)')
    return prompt


def given_on_command_line(ctx: typer.Context) -> set[str]:
    return {
        name
        for name in ctx.params
        if (source := ctx.get_parameter_source(name)) is not None and source.name == "COMMANDLINE"
    }


def apply_from_image(ctx: typer.Context, values: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """With --from IMAGE, stored parameters fill in what the command line did not give."""
    if values.get("from_") is None:
        return values, None
    from sdcli import remake

    record = remake.read_record(values["from_"])
    given = given_on_command_line(ctx)
    return remake.merge(record, values, given), remake.scheduler_state(record, given)


def model_request(values: dict[str, Any], scheduler_state: Any = None) -> ModelRequest:
    memory = dict(
        offload=values["offload"],
        vae_tiling=values["vae_tiling"],
        vae_slicing=values["vae_slicing"],
        attention_slicing=values["attention_slicing"],
        channels_last=values["channels_last"],
        compile=values["compile"],
        tiny_vae=values["tiny_vae"],
        oom_retry=values["oom_retry"],
    )
    if values["low_vram"]:
        options = MemoryOptions.low_vram(
            **{k: v for k, v in memory.items() if v not in (False, None, "none")}
        )
    else:
        options = MemoryOptions(**memory)
    return ModelRequest(
        model=values["model"],
        revision=values["revision"],
        variant=values["variant"],
        device=values["device"],
        dtype=values["dtype"],
        scheduler=values["scheduler"],
        schedule=values["schedule"],
        memory=options,
        safety_checker=not values["no_safety_checker"],
        rng=values["rng"],
        scheduler_state=scheduler_state,
        # .get: commands without these options share this function
        config=values.get("config"),
        allow_pickle=values.get("allow_pickle", False),
        loras=tuple(LoraSpec.parse(text) for text in values.get("lora") or ()),
        embeddings=tuple(EmbeddingSpec.parse(text) for text in values.get("embedding") or ()),
    ).validated()


def generation_request(values: dict[str, Any]) -> GenerationRequest:
    return GenerationRequest(
        prompt=read_prompt(values["prompt"]),
        negative=values["negative"],
        steps=values["steps"],
        guidance=values["guidance"],
        width=values["width"],
        height=values["height"],
        seed=values["seed"],
        count=values["count"],
        batch_size=values["batch_size"],
        strength=values.get("strength"),
        clip_skip=values.get("clip_skip", 1),
        weighting=values.get("weighting", "a1111"),
        long_prompts=not values.get("no_long_prompts", False),
    ).validated()


def write_images(out: Output, images: Any, total: int, progress: Any) -> tuple[int, int]:
    """Report each image as it is written; returns (written, skipped)."""
    written = skipped = 0
    task = progress.task("images", total=total)
    for result in images:
        for note in result.notes:
            out.warn(note)
        progress.update(task, advance=1)
        if result.path is None:
            skipped += 1
            out.warn(
                f"image {result.index} (seed {result.seed}) was blanked by the safety checker; not written"
            )
        else:
            written += 1
            out.data({"type": "image", **result.as_json()}) if out.json else out.result(str(result.path))
    return written, skipped


def finish(out: Output, written: int, skipped: int, began: float) -> None:
    seconds = time.perf_counter() - began
    if out.json:
        out.data({"type": "summary", "images": written, "failures": skipped, "seconds": round(seconds, 3)})
    out.info(f"{written} image(s) written in {seconds:.1f}s")
    if skipped:
        raise CheckFailed(
            f"{skipped} image(s) were blanked by the safety checker and not written",
            hint="--keep-filtered writes them marked -nsfw; --no-safety-checker turns the checker off",
        )


def existing_file(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path
