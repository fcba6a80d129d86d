"""Imported first by `sdcli.cli`, for the moments before `main()` installs `sdcli.core.signals`' handlers.

Importing the CLI takes 0.1-0.4 s (Typer, the commands); a Ctrl-C then raised KeyboardInterrupt out of the
import, printing a traceback. Until `main()` takes over, a Ctrl-C or SIGTERM exits at once with 130/143 and
one line: nothing has been started or written yet, so there is nothing to clean up. `done()`, at the end of
the CLI's import, puts back the handlers that were there (a test runner's own, say).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

_previous: dict[int, Any] = {}


def _exit_now(signum: int, frame: Any) -> None:
    os.write(2, b"error: terminated\n" if signum == signal.SIGTERM else b"error: interrupted\n")
    os._exit(128 + signum)


def done() -> None:
    for signum, handler in _previous.items():
        if signal.getsignal(signum) is _exit_now:
            signal.signal(signum, handler)
    _previous.clear()


if threading.current_thread() is threading.main_thread():
    for _signum in (signal.SIGINT, signal.SIGTERM):
        _handler = signal.getsignal(_signum)
        if _handler is not signal.SIG_IGN:  # an ignored signal stays ignored (a script's background job)
            _previous[_signum] = _handler
            signal.signal(_signum, _exit_now)
