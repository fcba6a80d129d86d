"""Sharing a run across processes started by `accelerate launch` (or torchrun): each process takes every
n-th piece of work, on its own device, and the summary is counted once."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TypeVar

from sdcli.generation.prompt_files import PromptLine

T = TypeVar("T")
_joined = False  # whether this process joined a process group (current() with WORLD_SIZE > 1)


@dataclass(frozen=True)
class Processes:
    index: int = 0
    count: int = 1
    device: str | None = None  # the device accelerate assigned to this process

    @property
    def is_main(self) -> bool:
        return self.index == 0


def current() -> Processes:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    import torch
    from accelerate import PartialState

    # Without a GPU (or told to stay off it), accelerate shares work between CPU processes only when asked
    # to: then it uses the gloo backend.
    on_cpu = not torch.cuda.is_available() or os.environ.get("SDCLI_DEVICE") == "cpu"
    state = PartialState(cpu=on_cpu)
    global _joined
    _joined = True
    return Processes(state.process_index, state.num_processes, str(state.device))


def spread(lines: list[PromptLine], processes: Processes) -> list[PromptLine]:
    """This process's share. A single prompt is split image by image; a prompt file line by line. Seeds
    and indices stay what a single process would give."""
    if processes.count == 1:
        return lines
    if len(lines) == 1 and lines[0].request.count > 1:
        line = lines[0]
        lines = [
            PromptLine(line.line, replace(line.request, seed=seed, count=1, first_index=i))
            for i, seed in enumerate(line.request.seeds)
        ]
    return share(lines, processes)


def share(items: list[T], processes: Processes) -> list[T]:
    """Every n-th item, from this process's index: each item goes to exactly one process."""
    return items[processes.index :: processes.count]


def total(processes: Processes, counts: list[int]) -> list[int]:
    """Element-wise sum of every process's counts (the same list comes back to each)."""
    if processes.count == 1:
        return counts
    from accelerate.utils import gather_object

    gathered: list[Any] = gather_object([counts])
    return [sum(column) for column in zip(*gathered, strict=True)]


def joined() -> bool:
    return _joined


def leave(code: object) -> NoReturn:
    """Ends a process that joined a process group, without the interpreter's teardown.

    gloo's worker thread drops the last collective's work (and the tensors it holds) a moment after the
    collective returns. When that moment falls inside the interpreter's finalisation, dropping a tensor
    takes the GIL, the finalising interpreter ends the thread, and the unwinding through C++ aborts the whole
    process ("terminate called without an active exception", exit -6), on a loaded machine about one run in
    ten. destroy_process_group() does not join that thread (references to the group outlive it). Every
    image and line is written and flushed by now, so exiting at once loses nothing. `code`: SystemExit's.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)
