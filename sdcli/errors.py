"""User-facing failures: one exception type per kind, each with a stable exit code.

The CLI catches `SdcliError` once (in `sdcli.cli.main`) and prints `error: ...` / `hint: ...` on stderr.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    MODEL_UNAVAILABLE = 3
    OUT_OF_MEMORY = 4
    DEVICE_UNAVAILABLE = 5
    OUTPUT_ERROR = 6
    CHECK_FAILED = 7
    INTERRUPTED = 130
    TERMINATED = 143


class SdcliError(Exception):
    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors span many), else its type's name."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class UsageError(SdcliError):
    """A bad option value or bad input file (exit 2)."""

    exit_code = ExitCode.USAGE


class ModelUnavailable(SdcliError):
    """Model not found, gated, unreachable, or not cached while offline (exit 3)."""

    exit_code = ExitCode.MODEL_UNAVAILABLE


class OutOfMemory(SdcliError):
    exit_code = ExitCode.OUT_OF_MEMORY


class DeviceUnavailable(SdcliError):
    exit_code = ExitCode.DEVICE_UNAVAILABLE


class OutputError(SdcliError):
    """The output cannot be written: exists, unwritable, disk full (exit 6)."""

    exit_code = ExitCode.OUTPUT_ERROR


class CheckFailed(SdcliError):
    """A result failed verification: NaNs, black image, a failed smoke-check stage (exit 7)."""

    exit_code = ExitCode.CHECK_FAILED


_OUT_OF_MEMORY_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_allocation_failure(exc: BaseException) -> bool:
    """A GPU (torch.OutOfMemoryError, "CUDA/MPS out of memory") or CPU allocation failure: torch's CPU
    allocator raises a RuntimeError "DefaultCPUAllocator: can't allocate memory", Python a MemoryError.
    Checked by name and text, so callers need not import torch."""
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()[:300]
    return isinstance(exc, RuntimeError) and any(words in text for words in _OUT_OF_MEMORY_WORDS)


def out_of_memory(exc: BaseException, where: str = "") -> OutOfMemory | None:
    """`exc` as sdcli's out-of-memory error, with the hint that fits where memory ran out (the machine's:
    smaller work; a GPU's: also offloading); None when it is no allocation failure."""
    text = str(exc).lower()[:300]
    if not (is_allocation_failure(exc) or "out of memory" in text):
        return None
    if isinstance(exc, MemoryError) or "cpu" in text:
        hint = "the machine ran out of memory: try a smaller --width/--height or --batch-size"
    else:
        hint = "try --low-vram, a smaller --batch-size or a smaller --width/--height (or --oom-retry)"
    return OutOfMemory(f"out of memory on {where}" if where else "out of memory", hint=hint)
