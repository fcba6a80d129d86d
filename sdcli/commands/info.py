"""`sdcli info`: what sdcli will run on, and (with --check) proof that it works there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sdcli.commands import options as opt
from sdcli.commands.console import Output
from sdcli.core.requests import DEFAULT_MODEL, ModelRequest
from sdcli.errors import DeviceUnavailable, SdcliError, UsageError

Check = Annotated[
    bool,
    typer.Option(
        "--check",
        help="Build a tiny random-weight pipeline (no download), run 2 steps on --device/--dtype, verify "
        "the image, and time each stage. Exit 7 naming the stage that failed.",
    ),
]
# No SDCLI_MODEL here: a default model in the environment must not turn every `info` into a model check.
CheckModel = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="With --check: check this model (local folder or already-cached Hub id) instead of a tiny one.",
    ),
]


Schedulers = Annotated[bool, typer.Option("--schedulers", help="List the sampler names --scheduler takes.")]


def info(
    ctx: typer.Context,
    images: Annotated[
        list[Path] | None, typer.Argument(help="Images to read: the prompt and parameters they carry.")
    ] = None,
    check: Check = False,
    schedulers: Schedulers = False,
    model: CheckModel = None,
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Show versions, devices, cached models and defaults; --check proves the stack works; IMAGE... shows
    what images carry."""
    out = Output(quiet=quiet, json=json_)
    ctx.meta["sdcli.debug"] = debug or ctx.meta.get("sdcli.debug", False)
    if images:
        return show_images(out, images)
    if schedulers:
        return show_schedulers(out)
    if model is not None and not check:
        raise UsageError("--model is used only with --check", hint="sdcli info --check --model MODEL")
    # Bad option values fail here, before torch is imported.
    ModelRequest(model or DEFAULT_MODEL, device=device, dtype=dtype).validated()

    from sdcli.commands import tables
    from sdcli.diagnostics import check as checks
    from sdcli.diagnostics import environment

    env = environment.collect(device, dtype)
    found = configured_defaults(ctx)
    if not json_:
        tables.show([*tables.environment(env), tables.defaults(found)])
    report: checks.CheckReport | None = None
    failure: SdcliError | None = None
    if check:
        with out.progress() as progress:
            task = progress.task("check")
            try:
                report = checks.run_check(
                    device, dtype, model, on_stage=lambda name: progress.update(task, description=name)
                )
            except SdcliError as exc:
                failure = exc
                report = checks.not_run(device, dtype, model, exc)
        if not json_ and report.stages:
            tables.show([tables.check(report)])
    elif env.choice.error:
        failure = DeviceUnavailable(env.choice.error)
    if json_:
        defaults = {
            command: {name: {"value": value, "source": source} for name, (value, source) in options.items()}
            for command, options in found.items()
        }
        out.data({**env.as_json(), "defaults": defaults, "check": report.as_json() if report else None})
    if failure is not None:
        raise failure


def show_images(out: Output, images: list[Path]) -> None:
    """Every image is reported: one that cannot be read gets its error line, and then the exit code is 2."""
    from dataclasses import asdict

    from sdcli.commands import tables
    from sdcli.images import metadata

    failed = 0
    for path in images:
        try:
            meta = metadata.read_metadata(path)
        except UsageError as exc:
            out.error(exc.message)
            failed += 1
            continue
        if meta.warnings:  # one line per file, however much is wrong with it
            out.warn(f"{meta.file}: {'; '.join(meta.warnings)}; ignored")
        if out.json:
            out.data(asdict(meta))
        else:
            tables.show([tables.image_metadata(meta)])
    if failed:
        raise typer.Exit(int(UsageError.exit_code))


def show_schedulers(out: Output) -> None:
    from sdcli.commands import tables
    from sdcli.model import schedulers

    rows = schedulers.names()
    if out.json:
        out.data({"samplers": rows})
    else:
        tables.show([tables.samplers(rows)])


def configured_defaults(ctx: typer.Context) -> dict[str, dict[str, tuple[object, str]]]:
    """Each command's defaults that come from the config file or SDCLI_* variables, and from where."""
    from sdcli.core import config

    return config.sources(opt.command_options(ctx), config.load())
