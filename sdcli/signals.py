"""SIGTERM behaves like Ctrl-C: the image in progress is abandoned, finished ones stay, exit 143."""

from __future__ import annotations

import signal
import threading
from typing import Any

from sdcli.errors import ExitCode, SdcliError


class Terminated(SdcliError):
    exit_code = ExitCode.TERMINATED


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated("terminated")


def terminate_like_interrupt() -> None:
    # Signal handlers can only be set from the main thread (not, e.g., from a test runner's worker thread).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
