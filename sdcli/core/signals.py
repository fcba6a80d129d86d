"""SIGTERM behaves like Ctrl-C: the image in progress is abandoned, finished ones stay; exit 143 (Ctrl-C 130).

Two things make that hold at any moment, model loading included:

- the exception a signal raises is a `KeyboardInterrupt` (a `BaseException`), so the `except Exception` in
  transformers' and diffusers' lazy-import machinery can neither swallow it nor wrap it in "Failed to import";
- the signal is also remembered, and `check()` (between stages, at every denoising step and at the error
  boundary) raises it again: an exception raised inside a `__del__` or a C callback is printed and dropped by
  Python, and the run would otherwise go on.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from sdcli.errors import ExitCode

_received: int | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt (so `except Exception` lets it through)."""

    exit_code = ExitCode.TERMINATED
    message = "terminated"


def exit_code(exc: BaseException | None = None) -> ExitCode:
    """143 for SIGTERM, 130 for Ctrl-C: from the signal received, else from the exception."""
    if _received == signal.SIGTERM or isinstance(exc, Terminated):
        return ExitCode.TERMINATED
    return ExitCode.INTERRUPTED


def received() -> int | None:
    return _received


def check() -> None:
    """Raise again a signal whose exception may have been lost (raised in a `__del__`, or swallowed)."""
    if _received is not None:
        raise Terminated("terminated") if _received == signal.SIGTERM else KeyboardInterrupt()


def _on_signal(signum: int, frame: Any) -> None:
    global _received
    _received = signum
    check()


def reset() -> None:
    """Forget a signal received by an earlier in-process run (tests)."""
    global _received
    _received = None


def _quiet_when_stopping(unraisable: Any, previous: Any = sys.unraisablehook) -> None:
    """Python prints an exception raised inside a `__del__` ("Exception ignored in ...") and drops it. One
    of ours needs no printing: the signal is remembered, and `check()` raises it again."""
    if _received is not None and isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    previous(unraisable)


def install() -> None:
    """Handle SIGINT and SIGTERM from now on (idempotent: a signal already received is kept). A signal the
    parent set to be ignored stays ignored: a shell script's background job must outlive a Ctrl-C."""
    sys.unraisablehook = _quiet_when_stopping
    # Signal handlers can only be set from the main thread (not, e.g., from a test runner's worker thread).
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, _on_signal)
