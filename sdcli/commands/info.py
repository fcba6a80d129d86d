"""`sdcli info`: what sdcli will run on, and (with --check) proof that it works there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sdcli import options as opt
from sdcli.console import Output
from sdcli.errors import DeviceUnavailable, SdcliError, UsageError
from sdcli.requests import DEFAULT_MODEL, ModelRequest

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


def info(
    ctx: typer.Context,
    images: Annotated[list[Path] | None, typer.Argument(help="Images to read metadata from.")] = None,
    check: Check = False,
    model: CheckModel = None,
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Show versions, devices, cached models and settings; --check proves the stack works."""
    out = Output(quiet=quiet, json=json_, debug=debug)
    ctx.meta["sdcli.debug"] = debug or ctx.meta.get("sdcli.debug", False)
    if images:
        raise UsageError("reading image metadata is not available yet")
    if model is not None and not check:
        raise UsageError("--model is used only with --check", hint="sdcli info --check --model MODEL")
    # Bad option values fail here, before torch is imported.
    ModelRequest(model or DEFAULT_MODEL, device=device, dtype=dtype).validated()

    from sdcli import check as checks
    from sdcli import environment, tables

    env = environment.collect(device, dtype)
    if not json_:
        tables.show(tables.environment(env))
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
        out.data({**env.as_json(), "check": report.as_json() if report else None})
    if failure is not None:
        raise failure
