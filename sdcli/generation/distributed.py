"""Sharing a run across processes started by `accelerate launch` (or torchrun): each process takes every
n-th piece of work, on its own device, and the summary is counted once."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sdcli.generation.prompt_files import PromptLine

T = TypeVar("T")


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
    # A process group still alive when the interpreter exits is torn down by C++ static destructors, and
    # gloo's threads then sometimes abort the process ("terminate called without an active exception",
    # exit -6), more often on a loaded machine. Closing it while Python still runs is clean.
    atexit.register(state.destroy_process_group)
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
