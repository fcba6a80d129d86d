"""Output file names from templates, and atomic, never-clobbering PNG writes."""

from __future__ import annotations

import os
import re
import string
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sdcli.errors import OutputError, UsageError

DEFAULT_FOLDER = Path("outputs")
DEFAULT_NAME = "{date}-{time}-{seed}-{prompt}.png"
# img2img and inpaint: outputs sort by time, then by the input they came from.
INPUT_NAME = "{date}-{time}-{input}-{seed}.png"
UPSCALE_NAME = "{date}-{time}-{input}-upscaled.png"  # sdcli upscale: no seed to tell its outputs apart
TEMPLATE_KEYS = {"seed", "index", "prompt", "date", "time", "model", "input", "line"}
MAX_NAME_BYTES = 255
SLUG_BYTES = 60
# Names Windows refuses whatever the extension.
RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}


@dataclass(frozen=True)
class OutputPlan:
    """How to name a run's files: `explicit` names must not exist yet (exit 6 without --overwrite);
    default names get a `_1`, `_2` suffix instead."""

    folder: Path
    template: str
    explicit: bool
    overwrite: bool = False


def plan(
    output: str | None,
    *,
    count: int,
    overwrite: bool = False,
    default_name: str = DEFAULT_NAME,
    per_input: bool = False,
) -> OutputPlan:
    """A folder, or a template whose keys may also name subfolders (`out/{date}/{seed}.png`).
    `per_input`: the run has several inputs, so a given name without {input} gets `-{input}` added."""
    if output is None:
        return OutputPlan(DEFAULT_FOLDER, default_name, explicit=False, overwrite=overwrite)
    path = Path(output).expanduser()
    is_folder = path.is_dir() or output.endswith(("/", os.sep)) or (not path.suffix and "{" not in path.name)
    parts = path.parts
    # Leading parts without keys are the folder; the rest (always the file name) is the template.
    last = len(parts) if is_folder else len(parts) - 1
    fixed = next((i for i, part in enumerate(parts) if "{" in part), last)
    folder, templated = Path(*parts[:fixed]) if fixed else Path("."), "/".join(parts[fixed:])
    if is_folder:
        subfolders = templated + "/" if templated else ""
        check_template(subfolders)
        return OutputPlan(folder, subfolders + default_name, explicit=False, overwrite=overwrite)
    if path.suffix.lower() != ".png":
        raise UsageError(f"--output {output}: only .png files are written", hint="end the name in .png")
    check_template(templated)
    stem = templated.removesuffix(path.suffix)
    if per_input and "input" not in _keys(templated):
        stem += "-{input}"
    if count > 1 and not {"seed", "index"} & _keys(templated):
        stem += "-{index}"
    return OutputPlan(folder, stem + path.suffix, explicit=True, overwrite=overwrite)


def _keys(template: str) -> set[str]:
    try:
        return {key for _, key, _, _ in string.Formatter().parse(template) if key is not None}
    except ValueError as exc:
        raise UsageError(f"--output template {template!r}: {exc}") from exc


def check_template(template: str) -> None:
    unknown = _keys(template) - TEMPLATE_KEYS
    if "" in unknown or unknown:
        raise UsageError(
            f"--output template has unknown key(s): {', '.join(sorted(k or '{}' for k in unknown))}",
            hint=f"use {', '.join('{' + k + '}' for k in sorted(TEMPLATE_KEYS))}",
        )
    # Keys are known, but a format spec or conversion may not suit the value ({seed:s}, {index!x}):
    # fill the template once with values of the right types, so it fails here and not after loading.
    sample: dict[str, Any] = {key: "x" for key in TEMPLATE_KEYS} | {"seed": 0, "index": 0, "line": 0}
    try:
        template.format(**sample)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise UsageError(
            f"--output template {template!r}: {exc}",
            hint="{seed}, {index} and {line} are numbers (e.g. {index:04d}), the other keys text",
        ) from None


def safe_name(text: str, max_bytes: int = SLUG_BYTES) -> str:
    """A file-name piece from arbitrary text: no separators, traversal, control characters or reserved
    Windows names, and at most `max_bytes` of UTF-8 (cut on a character boundary)."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        ch if ch.isalnum() or ch in "-_" else " " for ch in text if unicodedata.category(ch)[0] != "C"
    )
    text = re.sub(r"\s+", "_", text.strip()).strip("._-")
    if text.split(".")[0].upper() in RESERVED:
        text = f"_{text}"
    return _cut_bytes(text, max_bytes) or "image"


def _cut_bytes(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def render(
    plan: OutputPlan,
    *,
    started: datetime,
    seed: int,
    index: int,
    prompt: str,
    model: str,
    input_name: str = "",
    line: int = 0,
) -> Path:
    values: dict[str, Any] = {
        "seed": seed,
        "index": index,
        "date": started.strftime("%Y%m%d"),
        "time": started.strftime("%H%M%S"),
        "model": safe_name(model.rsplit("/", 1)[-1]),
        "input": safe_name(input_name),
        "line": line,
    }
    *subfolders, name = plan.template.split("/")
    # Each piece is cleaned after the keys are filled in, so no value can add a separator or a `..`:
    # every file stays inside the output folder.
    folder = plan.folder.joinpath(
        *(safe_name(part.format(prompt=safe_name(prompt), **values), MAX_NAME_BYTES) for part in subfolders)
    )
    stem, suffix = os.path.splitext(name)
    budget = MAX_NAME_BYTES - len(suffix.encode())
    # Over 255 bytes, the prompt gives way first, so the seed and index that keep names apart survive.
    slug_bytes = SLUG_BYTES
    while True:
        text = safe_name(stem.format(prompt=safe_name(prompt, slug_bytes), **values), MAX_NAME_BYTES * 4)
        overflow = len(text.encode()) - budget
        if overflow <= 0 or "{prompt}" not in stem or slug_bytes == 0:
            return folder / (_cut_bytes(text, budget) + suffix)
        slug_bytes = max(0, slug_bytes - -(-overflow // stem.count("{prompt}")))


def check_free(paths: list[Path], plan: OutputPlan) -> None:
    """Fail before any model loads when explicitly named outputs collide or already exist."""
    if not plan.explicit:
        return
    if len(set(paths)) < len(paths):
        # With {input}, the clash is between inputs of the same name in different folders: every input
        # gets the same seeds and indexes, so neither {seed} nor {index} would tell them apart.
        hint = (
            "inputs in different folders share a file name, and {input} is the name without its folder: "
            "rename one, or run each folder with its own --output"
            if "input" in _keys(plan.template)
            else "add {seed} or {index}"
        )
        raise UsageError("--output template gives the same name to several images", hint=hint)
    taken = [p for p in paths if p.exists()]
    if taken and not plan.overwrite:
        raise OutputError(
            f"{taken[0]} already exists", hint="pass --overwrite to replace it, or pick another --output"
        )


def write_png(
    image: Any, path: Path, pnginfo: Any = None, *, overwrite: bool = False, unique: bool = False
) -> Path:
    """Write through a temporary file in the target folder, then link it into place: readers never see a
    half-written PNG, and without `overwrite` an existing file is never replaced (even by a racing process).
    With `unique`, a taken name becomes `name_1.png`, `name_2.png`, ..."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:40]}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):  # mkstemp's 0600 -> the mode any new file gets: 0666 less the umask
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
            image.save(handle, format="PNG", pnginfo=pnginfo)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
            return path
        return _link_exclusive(tmp, path, unique)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def _link_exclusive(tmp: str, path: Path, unique: bool) -> Path:
    candidate, n = path, 0
    while True:
        try:
            _claim(tmp, candidate)
            return candidate
        except FileExistsError:
            if not unique:
                raise OutputError(
                    f"{candidate} already exists", hint="pass --overwrite to replace it"
                ) from None
            n += 1
            candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")


def _claim(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)  # atomic, and fails if the name is taken
    except FileExistsError:
        raise
    except OSError:
        # No hard links here (some network and FUSE file systems): reserve the name, then move over it.
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.replace(tmp, path)
