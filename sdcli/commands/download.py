"""`sdcli download`: fetch a model from the Hub ahead of time, print where it is.

Thin: choosing and fetching files is `sdcli.hub.fetch`; this module parses options and talks to the terminal.
Data goes to stdout (the path, or one JSON object), everything for people to stderr. The main CLI
registers it with `app.command("download")(download)` and turns SdcliError into `error:`/`hint:` and an
exit code.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdcli.commands.console import Output, human_bytes
from sdcli.errors import UsageError

if TYPE_CHECKING:  # imported when the command runs: `sdcli --help` needs it not (~0.05 s)
    from sdcli.hub import fetch

_NAMED_FILES_CONFLICTS = ("--variant", "--all", "--config-only", "--include", "--exclude")


def download(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="Hub model id, owner/name (a Hub URL works too).")
    ],
    files: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="FILE",
            help="Fetch exactly these files of the repo instead (a single-file checkpoint, a LoRA).",
        ),
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", metavar="REV", help="Branch, tag or commit; default main.")
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            "--variant", metavar="NAME", help="Weight variant, e.g. fp16: x.fp16.safetensors where it exists."
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", metavar="GLOB", help="Also fetch files matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", metavar="GLOB", help="Skip files matching this glob (repeatable)."),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Fetch every file, not only what generation needs.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List files and sizes; fetch nothing.")] = False,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to", metavar="DIR", help="Put the files in this plain folder instead of the HF cache."
        ),
    ] = None,
    config_only: Annotated[
        bool, typer.Option("--config-only", help="Only configs and tokenizer files, no weights.")
    ] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout, not the path.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr but errors.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Use the local cache only; no network.")] = False,
) -> None:
    """Download a model from the Hugging Face Hub: only the files generation needs, unless told otherwise."""

    from sdcli.hub import fetch
    from sdcli.hub.settings import set_offline

    named = list(files or [])
    _check_options(
        named, variant=variant, all_=all_, config_only=config_only, include=include, exclude=exclude
    )
    if offline:
        set_offline(True)
    repo_id = _repo_id(model)
    if named:
        plan = fetch.plan_files(repo_id, named, revision=revision)
    else:
        plan = fetch.plan_download(
            repo_id,
            revision=revision,
            variant=variant,
            include=include or [],
            exclude=exclude or [],
            everything=all_,
            config_only=config_only,
        )
    out = Output(quiet=quiet)
    if not plan.pipeline and not named:
        out.info(f"note: {repo_id} has no model_index.json; taking its top-level safetensors and configs")
    if plan.missing_weights:
        out.warn(
            f"no safetensors weights selected for {', '.join(plan.missing_weights)}; "
            "sdcli loads only safetensors (see the repo's files with --all --dry-run)"
        )
    if dry_run:
        _print_plan(plan, json_)
        return
    result = _fetch(plan, to, out, show_bar=out.err.is_terminal and not json_)
    if json_:
        _emit_json(result.to_json())
    elif named:
        for name in named:
            _emit(str(result.path / name))
    else:
        _emit(str(result.path))


def _check_options(
    named: list[str],
    *,
    variant: str | None,
    all_: bool,
    config_only: bool,
    include: list[str] | None,
    exclude: list[str] | None,
) -> None:
    if named and (variant or all_ or config_only or include or exclude):
        raise UsageError(
            "FILE arguments name exact files: they do not combine with " + ", ".join(_NAMED_FILES_CONFLICTS),
            hint="drop the FILE arguments to select files by rules, or drop the selection options",
        )
    if all_ and config_only:
        raise UsageError("--all and --config-only contradict each other")
    if variant is not None and not variant.replace("_", "").replace("-", "").isalnum():
        raise UsageError(
            f"--variant {variant!r} is not a variant name", hint="variants look like fp16 or bf16"
        )


def _repo_id(model: str) -> str:
    """`owner/name`, also from a pasted model page URL (https://huggingface.co/owner/name/tree/main)."""
    from sdcli.hub.settings import hub_endpoint

    for prefix in (hub_endpoint() + "/", "https://huggingface.co/", "https://hf.co/"):
        if model.startswith(prefix):
            parts = model[len(prefix) :].split("/")
            return "/".join(parts[:2])
    repo = model.rstrip("/")
    _check_repo_id(repo)
    return repo


def _check_repo_id(repo: str) -> None:
    """A path or a malformed id fails here, as it would online: offline it was 'not in the local cache; run
    `sdcli download ../../etc`', a hint that sends the user round in a circle."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        if repo.startswith((".", "/", "~")) or repo.count("/") > 1:
            raise HFValidationError("it looks like a path")
        validate_repo_id(repo)
    except HFValidationError as exc:
        reason = (str(exc).strip().splitlines() or ["not owner/name"])[0]
        raise UsageError(
            f"'{repo}' is not a valid model id ({reason})",
            hint="download takes a Hub id like stable-diffusion-v1-5/stable-diffusion-v1-5; "
            "a local folder needs no download: pass it to --model as it is",
        ) from None


def _fetch(plan: fetch.DownloadPlan, to: Path | None, out: Output, *, show_bar: bool) -> fetch.DownloadResult:
    from sdcli.hub import fetch

    summary = f"{plan.repo_id} ({len(plan.files)} files, {human_bytes(plan.total_bytes)})"
    if plan.cached:
        out.info(f"{summary} is in the local cache")
        return fetch.download(plan, to=to)
    if not show_bar:  # a log, a pipe, CI: two plain lines instead of a redrawn bar
        out.info(f"downloading {summary} at {plan.commit[:12]}")
        started = time.monotonic()
        result = fetch.download(plan, to=to)
        out.info(f"done in {time.monotonic() - started:.1f}s")
        return result
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=out.err) as bar:
        task = bar.add_task(plan.repo_id, total=plan.total_bytes)
        result = fetch.download(plan, to=to, progress=lambda done, _total: bar.update(task, completed=done))
        # Files already cached are skipped without progress reports: show the bar full at the end.
        bar.update(task, completed=plan.total_bytes)
    return result


def _print_plan(plan: fetch.DownloadPlan, json_: bool) -> None:
    if json_:
        _emit_json(plan.to_json() | {"path": None, "dry_run": True})
        return
    for path, size in plan.files:
        _emit(f"{human_bytes(size):>10}  {path}")
    _emit(f"{human_bytes(plan.total_bytes):>10}  total, {len(plan.files)} files at {plan.commit[:12]}")


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _emit_json(obj: dict[str, Any]) -> None:
    _emit(json.dumps(obj, ensure_ascii=False, allow_nan=False))
