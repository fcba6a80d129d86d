"""Defaults from a TOML config file: `$SDCLI_CONFIG`, else `config.toml` in the platform's config folder.

Keys at the top level apply to every command that has that option; a `[generate]` (or other command) table
applies to that command alone. They become Click's `default_map`, so `SDCLI_*` variables override the file
and command-line flags override both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from sdcli.errors import UsageError


def config_path() -> Path:
    explicit = os.environ.get("SDCLI_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    import typer

    return Path(typer.get_app_dir("sdcli")) / "config.toml"


def load(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        if os.environ.get("SDCLI_CONFIG"):
            raise UsageError(f"SDCLI_CONFIG points at {path}, which does not exist") from None
        return {}
    except OSError as exc:
        raise UsageError(f"config file {path}: {exc}") from exc
    # Imported only when there is a file: every command, --help included, reads the config first.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    with handle:
        try:
            return tomllib.load(handle)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"config file {path}: {exc}") from exc


def option_name(key: str) -> str:
    """Config keys may be written like the flags (`batch-size`) or like Python (`batch_size`)."""
    return key.replace("-", "_")


def default_map(config: dict[str, Any], commands: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Click default_map for each command (`commands` maps each command to its options) from the config;
    unknown keys are a usage error naming them."""
    shared = {option_name(k): v for k, v in config.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in config.items() if isinstance(v, dict)}
    known = {name for options in commands.values() for name in options}
    unknown = [k for k in shared if k not in known] + [t for t in tables if t not in commands]
    for name, table in tables.items():
        unknown += [f"{name}.{k}" for k in table if name in commands and option_name(k) not in commands[name]]
    if unknown:
        raise UsageError(f"config file {config_path()}: unknown key(s) {', '.join(sorted(unknown))}")
    return {
        command: {
            **{k: v for k, v in shared.items() if k in options},
            **{option_name(k): v for k, v in tables.get(command, {}).items()},
        }
        for command, options in commands.items()
    }


def sources(
    commands: dict[str, dict[str, Any]], config: dict[str, Any]
) -> dict[str, dict[str, tuple[Any, str]]]:
    """Per command, each configured default and where it comes from: the config file, or the option's
    environment variable (`commands` maps each option to its envvar), which wins over the file."""
    found = {
        command: {key: (value, str(config_path())) for key, value in options.items()}
        for command, options in default_map(config, commands).items()
    }
    for command, options in commands.items():
        for key, envvar in options.items():
            if isinstance(envvar, str) and envvar in os.environ:
                found[command][key] = (os.environ[envvar], envvar)
    return found
