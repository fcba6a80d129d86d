"""The Typer app: registers the commands and turns every failure into one line and an exit code.

Each command lives in `sdcli/commands/<name>.py` (like the `hf` CLI) so commands stay short and independent;
this module owns only the app and the error boundary.
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from sdcli import __version__, options
from sdcli.commands.download import download
from sdcli.commands.generate import generate
from sdcli.commands.img2img import img2img
from sdcli.commands.info import info
from sdcli.commands.inpaint import inpaint
from sdcli.commands.serve import serve
from sdcli.console import Output
from sdcli.errors import ExitCode, SdcliError, first_line


class SdcliGroup(TyperGroup):
    """Catches errors once, for the real CLI and for tests that invoke the app in-process alike."""

    def invoke(self, ctx: Any) -> Any:  # Typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except SdcliError as exc:
            report(ctx, exc.message, exc.hint, exc)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt as exc:
            report(ctx, "interrupted", None, exc)
            ctx.exit(int(ExitCode.INTERRUPTED))
        except BrokenPipeError:
            # The reader went away (`sdcli ... | head`): stop quietly, as a process killed by SIGPIPE would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(128 + 13)
        except (typer.Exit, typer.Abort, typer.TyperException):  # Typer's own usage errors and exits
            raise
        except Exception as exc:
            code, message, hint = classify(exc)
            report(ctx, message, hint, exc)
            ctx.exit(int(code))

    def get_help_option(self, ctx: Any) -> Any:
        # Typer coerces every parameter value that is not already a bool through pydantic, and an absent
        # --help flag's value is None: so `sdcli generate --help` imported pydantic (~0.15 s) just to
        # process the group's own unused --help. False means the same to Click and skips that.
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


def classify(exc: Exception) -> tuple[ExitCode, str, str | None]:
    # Checked by name so this module never imports torch.
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()[:200]:
        return (
            ExitCode.OUT_OF_MEMORY,
            "out of memory",
            "try --low-vram, a smaller --batch-size, or a smaller --width/--height",
        )
    return (
        ExitCode.FAILURE,
        f"unexpected failure: {type(exc).__name__}: {first_line(exc)}",
        "run again with --debug for details",
    )


def report(ctx: typer.Context, message: str, hint: str | None, exc: BaseException) -> None:
    if ctx.meta.get("sdcli.debug"):
        traceback.print_exception(exc, file=sys.stderr)
    Output().error(message, hint)


app = typer.Typer(
    cls=SdcliGroup,
    name="sdcli",
    help="Stable Diffusion images from the terminal, on Hugging Face diffusers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain Click help: rich-formatted help costs ~0.1 s of imports on every --help.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sdcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.meta["sdcli.debug"] = debug
    from sdcli import config

    # Config-file defaults become Click's default_map: SDCLI_* variables and flags still win over them.
    loaded = config.load()
    if loaded:
        ctx.default_map = config.default_map(loaded, options.command_options(ctx))


app.command("generate")(generate)
app.command("download")(download)
app.command("info")(info)


app.command("img2img")(img2img)
app.command("inpaint")(inpaint)
app.command("serve")(serve)


def main() -> None:
    try:
        app(prog_name="sdcli")
    finally:
        # After a model ran, the process holds ~500k objects from torch, transformers and diffusers, and the
        # garbage collections Python runs while tearing them down kept the process alive ~3 s after the last
        # image was written (2-core CPU). Nothing is left to collect: freeze them. atexit handlers still run.
        gc.freeze()
