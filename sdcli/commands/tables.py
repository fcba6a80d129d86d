"""The human view of `sdcli info`: rich tables built from the environment and check reports.

Only layout lives here; what is reported is decided in `sdcli.diagnostics.environment` and
`sdcli.diagnostics.check`, whose `as_json` is the machine view. rich drops colour by itself for NO_COLOR,
TERM=dumb and pipes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from sdcli.commands.console import human_bytes
from sdcli.diagnostics.check import CheckReport
from sdcli.diagnostics.environment import EXTRAS, Environment
from sdcli.images.metadata import ImageMetadata


def show(renderables: Iterable[RenderableType]) -> None:
    """On stdout: for people, these tables are the command's result, not commentary."""
    console = Console(highlight=False)
    for renderable in renderables:
        console.print(renderable)
        console.print()


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", header_style="bold")
    for column in columns:
        table.add_column(column)
    return table


def versions(env: Environment) -> Table:
    table = _table(f"sdcli {env.sdcli}", "package", "version")
    table.add_row("python", f"{env.python} on {env.platform}")
    build = env.torch
    for name, version in env.packages.items():
        if version is None:
            if name in EXTRAS:
                table.add_row(Text(name, style="dim"), Text("not installed (optional)", style="dim"))
            else:
                table.add_row(name, Text("NOT INSTALLED", style="bold red"))
            continue
        if name == "torch":
            parts = [
                f"CUDA {build.cuda}" if build.cuda else None,
                f"cuDNN {build.cudnn}" if build.cudnn else None,
            ]
            parts.append(f"ROCm {build.rocm}" if build.rocm else None)
            gpu_build = ", ".join(p for p in parts if p) or "CPU-only build"
            version = f"{build.version} ({gpu_build})"
        table.add_row(name, version)
    return table


def devices(env: Environment) -> RenderableType:
    found = env.devices
    table = _table("Devices", "device", "name", "compute", "memory free / total", "bf16")
    for gpu in found.gpus:
        memory = f"{human_bytes(gpu.free_bytes)} / {human_bytes(gpu.total_bytes)}"
        table.add_row(f"cuda:{gpu.index}", gpu.name, gpu.capability, memory, "yes" if gpu.bf16 else "no")
    if not found.gpus:
        table.add_row(Text("cuda", style="dim"), Text("none visible", style="dim"), "", "", "")
    mps = ("mps", "Apple Metal", "", "", "") if found.mps else ("mps", Text("not available", style="dim"))
    table.add_row(*mps)
    cores = f" of {found.cpu_count} cores" if found.cpu_count else ""
    table.add_row("cpu", f"{found.cpu_threads} threads{cores}", "", "", "")
    choice = env.choice
    options = f"--device {choice.device_option} --dtype {choice.dtype_option}"
    if choice.error:
        line = Text.assemble((f"{options}: ", "bold"), (choice.error, "red"))
    else:
        line = Text.assemble(
            (f"{options} -> {choice.device}, {choice.dtype}", "bold"), f"  ({choice.reason})"
        )
    return Group(table, line)


def models(env: Environment) -> RenderableType:
    cache = env.cache
    state = "" if cache.exists else " (does not exist yet)"
    offline = ", offline" if cache.offline else ""
    title = Text.assemble(("Hugging Face cache: ", "bold"), f"{cache.path}{state}{offline}")
    parts: list[RenderableType] = [title]
    if cache.pipelines:
        table = _table("", "repo", "pipeline", "revisions", "size")
        for p in cache.pipelines:
            revisions = ", ".join(
                f"{r.commit[:10]} ({', '.join(r.refs)})" if r.refs else r.commit[:10] for r in p.revisions
            )
            table.add_row(p.repo_id, p.pipeline or "?", revisions, human_bytes(p.size_bytes))
        parts.append(table)
    elif cache.exists:
        parts.append(Text("no diffusers pipelines cached", style="dim"))
    parts += [Text(f"warning: {w}", style="yellow") for w in cache.warnings]
    return Group(*parts)


def settings(env: Environment) -> RenderableType:
    if not env.settings:
        return Text("no SDCLI_* settings in the environment", style="dim")
    table = _table("Settings", "variable", "value")
    for name, value in env.settings.items():
        table.add_row(name, value)
    return table


def environment(env: Environment) -> list[RenderableType]:
    return [versions(env), devices(env), models(env), settings(env)]


def check(report: CheckReport) -> RenderableType:
    size = f", {report.width}x{report.height}" if report.width else ""
    what = f"{report.model} ({report.pipeline})" if report.pipeline else report.model
    verdict = ("passed", "bold green") if report.ok else ("FAILED", "bold red")
    # A line of its own: as a table title it would wrap to the narrow table's width.
    title = Text.assemble(
        ("check ", "bold"),
        verdict,
        f": {what} on {report.device}, {report.dtype}{size}, {report.steps} steps",
    )
    table = Table(header_style="bold", show_footer=True)
    table.add_column("stage", footer="total")
    table.add_column("seconds", justify="right", footer=f"{report.total_seconds:.3f}")
    table.add_column("", footer="")
    for stage in report.stages:
        status = "ok" if stage.ok else Text("failed", style="bold red")
        table.add_row(stage.name, f"{stage.seconds:.3f}", status)
    return Group(title, table)


# C0 and C1 control characters but newline and tab, and DEL: an image's text must not drive the terminal.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# Laying out a cell costs rich time per word: a 60 MB prompt would take minutes. --json has it all.
_MAX_SHOWN = 20_000


def _plain(value: object) -> Text:
    """Text from an image, shown as it is: no rich markup ("[/]" in a prompt), no escape sequences."""
    text = str(value)
    if len(text) > _MAX_SHOWN:
        text = f"{text[:_MAX_SHOWN]}… ({len(text) - _MAX_SHOWN} more characters; --json shows them all)"
    return Text(_CONTROL_RE.sub("\ufffd", text))


def image_metadata(meta: ImageMetadata) -> RenderableType:
    source = meta.source or "no generation parameters"
    table = _table("", "key", "value")
    table.title = _plain(f"{meta.file} ({meta.format}, {source})")
    if meta.prompt is not None:
        table.add_row("Prompt", _plain(meta.prompt))
    if meta.negative:
        table.add_row("Negative prompt", _plain(meta.negative))
    for key, value in meta.parameters.items():
        table.add_row(_plain(key), _plain(value))
    return table


def samplers(rows: list[dict[str, Any]]) -> RenderableType:
    table = _table(
        "Samplers (--scheduler) and schedules (--schedule)", "sampler", "diffusers class", "schedules"
    )
    for row in rows:
        table.add_row(row["name"], row["class"], ", ".join(row["schedules"]) or "-")
    return table


def defaults(found: dict[str, dict[str, tuple[Any, str]]]) -> RenderableType:
    if not any(found.values()):
        return Text("no defaults from a config file or SDCLI_* variables", style="dim")
    table = _table("Defaults", "command", "option", "value", "from")
    for command, options in found.items():
        for name, (value, source) in sorted(options.items()):
            table.add_row(command, f"--{name.replace('_', '-')}", str(value), source)
    return table
