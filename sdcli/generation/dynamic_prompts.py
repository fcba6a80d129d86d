"""Dynamic prompts: `{red|green|blue}` variants and `__name__` wildcard files, resolved per image.

The maintained `dynamicprompts` package (what A1111's and ComfyUI's dynamic-prompts extensions use) does
the parsing and choosing. Image i of a run resolves its template with its own seed, so `--count N --seed S`
gives the same prompts and pixels as N runs at seeds S..S+N-1, and an image's `--from` remakes it exactly:
the record holds the resolved prompt, and the template beside it. A1111's `(word:1.3)` and `[word]` pass
through as text.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from sdcli.errors import UsageError, first_line
from sdcli.generation.prompt_files import PromptLine

# A variant needs a `|` inside braces; a lone `{...}` (JSON, a literal brace) is left alone.
_SYNTAX = re.compile(r"\{[^{}]*\|[^{}]*\}|__[\w./*-]+__")
_WILDCARD = re.compile(r"__([\w./*-]+)__")


def has_syntax(text: str) -> bool:
    return bool(_SYNTAX.search(text))


def check(template: str, folder: Path | None) -> None:
    """Refuse, before any model loads, a template that names a wildcard there is no file for."""
    for name in _WILDCARD.findall(template):
        if folder is None:
            raise UsageError(
                f"the prompt uses the wildcard __{name}__ but no wildcard folder was given",
                hint="--wildcards DIR, a folder of NAME.txt files with one choice per line",
            )
        if "*" not in name and not (folder / f"{name}.txt").is_file():
            raise UsageError(f"wildcard __{name}__: no file {folder / (name + '.txt')}")


def resolve(template: str, seed: int, folder: Path | None) -> str:
    """The template with each variant and wildcard chosen by `seed`."""
    from dynamicprompts.generators import RandomPromptGenerator
    from dynamicprompts.wildcards import WildcardManager

    manager = WildcardManager(folder) if folder is not None else None
    try:
        found = RandomPromptGenerator(wildcard_manager=manager, seed=seed).generate(template, 1)
    except Exception as exc:  # dynamicprompts' parse errors have no common base class
        raise UsageError(f"cannot read the dynamic prompt {template!r}: {first_line(exc)}") from exc
    return str(found[0]) if found else template


def expand(lines: list[PromptLine], folder: Path | None) -> list[PromptLine]:
    """A line whose prompt or negative has variants or wildcards becomes one line per image, each with its
    resolved text; other lines stay as they are."""
    expanded = []
    for line in lines:
        request = line.request
        if not (has_syntax(request.prompt) or has_syntax(request.negative)):
            expanded.append(line)
            continue
        check(request.prompt, folder)
        check(request.negative, folder)
        for i, seed in enumerate(request.seeds):
            templates = {"prompt_template": request.prompt, "negative_template": request.negative or None}
            resolved = replace(
                request,
                prompt=resolve(request.prompt, seed, folder),
                negative=resolve(request.negative, seed, folder) if request.negative else "",
                seed=seed,
                count=1,
                first_index=request.first_index + i,
                extra={**request.extra, **templates},
            )
            expanded.append(PromptLine(line.line, resolved))
    return expanded
