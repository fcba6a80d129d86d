"""Where output goes: data (images' JSON records, paths) on stdout, everything for people on stderr.

Progress bars appear only when stderr is a terminal and neither `--quiet` nor `--json` is given; rich itself
honours NO_COLOR and TERM=dumb.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# C0 and C1 controls, and the Unicode line and paragraph separators a terminal may break lines at.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    # Imported on first use: rich.markup pulls in rich.text (~0.02 s), which `--help` never needs.
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def for_people(text: str) -> str:
    """What reaches stderr: one line per message (a newline in a path or a prompt is shown as `\\n`, and no
    control character reaches the terminal), and never a Hub token (`hf_...`, or HF_TOKEN's value)."""
    from sdcli.hub.errors import redact

    return redact(_CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text))


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def human_bytes(count: int | None) -> str:
    """Decimal units, as the Hub and `hf` show sizes: 2.1 MB, 6.9 GB."""
    if count is None:
        return "?"
    size, unit = float(count), 0
    units = ("B", "kB", "MB", "GB", "TB")
    while size >= 1000 and unit < len(units) - 1:
        size, unit = size / 1000, unit + 1
    return f"{count} B" if unit == 0 else f"{size:.1f} {units[unit]}"


@dataclass
class Output:
    quiet: bool = False
    json: bool = False
    console: Console | None = None  # stderr's; made on first use, since rich costs a quiet call ~14 ms

    @property
    def err(self) -> Console:
        if self.console is None:
            self.console = _stderr_console()
        return self.console

    @property
    def show_progress(self) -> bool:
        return not (self.quiet or self.json) and self.err.is_terminal

    def data(self, obj: Any) -> None:
        """One JSON object per line on stdout, flushed so a pipe reader sees it at once."""
        sys.stdout.write(json.dumps(obj, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n")
        sys.stdout.flush()

    def result(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def info(self, text: str) -> None:
        if not (self.quiet or self.json):
            self.err.print(escape(for_people(text)))

    def warn(self, text: str) -> None:
        if not self.quiet:
            self.err.print(f"[yellow]warning:[/yellow] {escape(for_people(text))}")

    def error(self, text: str, hint: str | None = None) -> None:
        self.err.print(f"[bold red]error:[/bold red] {escape(for_people(text))}")
        if hint:
            self.err.print(f"[cyan]hint:[/cyan] {escape(for_people(hint))}")

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        if not self.show_progress:
            yield Progress(None)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        bar = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
        )
        with bar:
            yield Progress(bar)


class Progress:
    """A thin handle over rich's Progress that does nothing when progress is off."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def task(self, description: str, total: float | None = None) -> Any:
        return self._bar.add_task(description, total=total) if self._bar else None

    def update(self, task: Any, **fields: Any) -> None:
        if self._bar is not None and task is not None:
            self._bar.update(task, **fields)

    def done(self, task: Any) -> None:
        if self._bar is not None and task is not None:
            self._bar.remove_task(task)
