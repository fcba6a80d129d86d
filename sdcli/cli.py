"""The Typer app: registers the commands and turns every failure into one line and an exit code.

Each command lives in `sdcli/commands/<name>.py` (like the `hf` CLI) so commands stay short and independent;
this module owns only the app and the error boundary.
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from typing import Annotated, Any, NoReturn

from sdcli.core import startup  # first: a signal while the modules below import exits 130/143, one line

# isort: split
import typer
from typer.core import TyperGroup

from sdcli import __version__
from sdcli.commands import options
from sdcli.commands.console import Output
from sdcli.commands.download import download
from sdcli.commands.generate import generate
from sdcli.commands.img2img import img2img
from sdcli.commands.info import info
from sdcli.commands.inpaint import inpaint
from sdcli.commands.serve import serve
from sdcli.commands.upscale import upscale
from sdcli.core import signals
from sdcli.errors import ExitCode, SdcliError, first_line, out_of_memory
from sdcli.generation import distributed


class SdcliGroup(TyperGroup):
    """Catches errors once, for the real CLI and for tests that invoke the app in-process alike."""

    def invoke(self, ctx: Any) -> Any:  # Typer's vendored click.Context
        signals.install()
        try:
            result = super().invoke(ctx)
            signals.check()  # a signal whose exception was dropped (raised in a __del__) still stops
            return result
        except KeyboardInterrupt as exc:  # Ctrl-C, and SIGTERM (signals.Terminated)
            stopped(ctx, exc)
        except SdcliError as exc:
            if signals.received() is not None:  # the signal's exception was caught and turned into this
                stopped(ctx, exc)
            report(ctx, exc.message, exc.hint, exc)
            ctx.exit(int(exc.exit_code))
        except BrokenPipeError:
            # The reader went away (`sdcli ... | head`): stop quietly, as a process killed by SIGPIPE would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(128 + 13)
        except typer.TyperException as exc:  # Click's usage errors: one line, not its usage block
            one_line_usage_error(ctx, exc)
            raise
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if signals.received() is not None:  # e.g. wrapped in "Failed to import diffusers.pipelines..."
                stopped(ctx, exc)
            code, message, hint = classify(exc)
            report(ctx, message, hint, exc)
            ctx.exit(int(code))

    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except typer.TyperException as exc:  # `sdcli --bogus`, `sdcli genrate`
            one_line_usage_error(None, exc)
            raise

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
    if (memory := out_of_memory(exc)) is not None:
        return memory.exit_code, memory.message, memory.hint
    return (
        ExitCode.FAILURE,
        f"unexpected failure: {type(exc).__name__}: {first_line(exc)}",
        "run again with --debug for details",
    )


def one_line_usage_error(ctx: typer.Context | None, exc: Exception) -> None:
    """Report a Click usage error as `error:` and `hint:` lines and exit 2; return for anything else
    (NoArgsIsHelpError prints the help, other Click exceptions keep Click's handling)."""
    if type(exc).__name__ == "NoArgsIsHelpError" or getattr(exc, "exit_code", None) != 2:
        return
    where = getattr(exc, "ctx", None)
    message = usage_message(exc, where)
    hint = f"see '{where.command_path} --help'" if where is not None else "see 'sdcli --help'"
    option = getattr(exc, "option_name", None)
    elsewhere = commands_with(where, option)
    if elsewhere and where is not None:  # img2img --refiner, say: Click's guesses at a typo would mislead
        message = f"{where.info_name} has no {option} option"
        hint = f"{option} is an option of {' and '.join(elsewhere)}"
    if ctx is not None and ctx.meta.get("sdcli.debug"):
        print_traceback(exc)
    Output().error(message, hint)
    raise typer.Exit(int(ExitCode.USAGE))


def commands_with(where: Any, option: str | None) -> list[str]:
    """The other sdcli commands that have `option`, for an option given to one that has not."""
    if where is None or not option or not option.startswith("--"):
        return []
    commands = getattr(where.find_root().command, "commands", {})
    return [
        f"sdcli {name}"
        for name, command in commands.items()
        if name != where.info_name and any(option in getattr(p, "opts", ()) for p in command.params)
    ]


def usage_message(exc: Exception, ctx: Any) -> str:
    """Click's own text for a usage error, except that a bad value names where it came from: Click blames
    the option's environment variable even when the value came from the config file."""
    param = getattr(exc, "param", None)
    if not isinstance(exc, typer.BadParameter) or param is None or ctx is None:
        return str(exc.format_message() if hasattr(exc, "format_message") else exc)
    source = ctx.get_parameter_source(param.name)
    reason = exc.message
    if source is not None and source.name == "DEFAULT_MAP":
        from sdcli.core import config

        value = (ctx.default_map or {}).get(param.name)
        return f"config file {config.config_path()}: {param.name} = {value!r} is not valid: {reason}"
    names = " / ".join(f"'{o}'" for o in getattr(param, "opts", ())) or param.human_readable_name
    if source is not None and source.name == "ENVIRONMENT" and isinstance(param.envvar, str):
        return f"invalid value for {names} from {param.envvar}={os.environ.get(param.envvar, '')!r}: {reason}"
    return f"invalid value for {names}: {reason}"


def stopped(ctx: typer.Context, exc: BaseException) -> NoReturn:
    code = signals.exit_code(exc)
    report(ctx, "terminated" if code == ExitCode.TERMINATED else "interrupted", None, exc)
    ctx.exit(int(code))


def report(ctx: typer.Context, message: str, hint: str | None, exc: BaseException) -> None:
    if ctx.meta.get("sdcli.debug"):
        print_traceback(exc)
    Output().error(message, hint)


def print_traceback(exc: BaseException) -> None:
    """--debug's traceback, Hub tokens redacted: an HTTP error's text may echo the Authorization header."""
    from sdcli.hub.errors import redact

    sys.stderr.write(redact("".join(traceback.format_exception(exc))))


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
    from sdcli.core import config

    # Config-file defaults become Click's default_map: SDCLI_* variables and flags still win over them.
    loaded = config.load()
    if loaded:
        ctx.default_map = config.default_map(loaded, options.command_options(ctx))


app.command("generate")(generate)
app.command("download")(download)
app.command("info")(info)


app.command("img2img")(img2img)
app.command("inpaint")(inpaint)
app.command("upscale")(upscale)
app.command("serve")(serve)
startup.done()  # main() installs sdcli.core.signals' handlers; in-process users get theirs back


def main() -> None:
    signals.install()  # from here on, a signal at any moment exits 130/143
    try:
        app(prog_name="sdcli")
    except KeyboardInterrupt as exc:  # a signal while Typer builds the Click command, before Click's try
        code = signals.exit_code(exc)
        Output().error("terminated" if code == ExitCode.TERMINATED else "interrupted")
        raise SystemExit(int(code)) from None
    except SystemExit as exc:
        # A signal outside a command (parsing, or during the error report itself) reaches Click, which
        # prints "Aborted!" and exits 1.
        code = signals.exit_code()
        if signals.received() is not None and exc.code != int(code):
            Output().error("terminated" if code == ExitCode.TERMINATED else "interrupted")
            raise SystemExit(int(code)) from None
        raise
    finally:
        # After a model ran, the process holds ~500k objects from torch, transformers and diffusers, and the
        # garbage collections Python runs while tearing them down kept the process alive ~3 s after the last
        # image was written (2-core CPU). Nothing is left to collect: freeze them. atexit handlers still run.
        gc.freeze()
        ending = sys.exc_info()[1]
        if distributed.joined() and isinstance(ending, SystemExit):  # see distributed.leave
            distributed.leave(ending.code)
