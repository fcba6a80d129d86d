"""SHA-256 of weight files as A1111 and Civitai write them, each computed once per version of a file.

A 6 GB checkpoint takes tens of seconds to hash, so results are kept in `<cache>/hashes.json`, keyed by the
absolute path, the hash kind, the size and the modification time: a file that changes is hashed again, one
that does not is never read again. The cache is a convenience: when it cannot be read or written the hash is
simply computed. Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

BLOCK = 1024 * 1024
# "file": SHA-256 of the whole file (A1111's checkpoint `Model hash` and `TI hashes`).
# "safetensors-data": SHA-256 of a .safetensors file after its JSON header (kohya's "addnet" hash, which
# A1111 writes in `Lora hashes` and Civitai shows as AutoV3): editing the metadata does not change it.
KINDS = ("file", "safetensors-data")


def cache_dir() -> Path:
    """sdcli's own small state: $SDCLI_CACHE_DIR, else $XDG_CACHE_HOME/sdcli, else ~/.cache/sdcli."""
    if override := os.environ.get("SDCLI_CACHE_DIR"):
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "sdcli"


def cache_file() -> Path:
    return cache_dir() / "hashes.json"


def _compute(path: Path, kind: str) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if kind == "safetensors-data":
            header_length = int.from_bytes(f.read(8), "little")
            f.seek(8 + header_length)
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _load() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store(key: str, entry: dict[str, Any]) -> None:
    # Read-modify-write: two processes hashing at once may drop one entry, which only costs a re-hash later.
    path = cache_file()
    data = _load()
    data[key] = entry
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with contextlib.suppress(OSError):  # a read-only home must not stop a generation
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=False), encoding="utf-8")
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file, never half of one
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def sha256(path: str | os.PathLike[str], kind: str = "file") -> str:
    """The full hex SHA-256 of `path` (see KINDS), from the cache when the file has not changed."""
    if kind not in KINDS:
        raise ValueError(f"unknown hash kind {kind!r}")
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    key = f"{kind}:{resolved}"
    entry = _load().get(key)
    if (
        isinstance(entry, dict)
        and entry.get("size") == stat.st_size
        and entry.get("mtime_ns") == stat.st_mtime_ns
        and isinstance(entry.get("sha256"), str)
    ):
        return str(entry["sha256"])
    value = _compute(resolved, kind)
    _store(key, {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": value})
    return value


def model_hash(path: str | os.PathLike[str]) -> str:
    """A1111's `Model hash`: the first 10 hex digits of the checkpoint file's SHA-256."""
    return sha256(path)[:10]


def lora_hash(path: str | os.PathLike[str]) -> str:
    """A1111's `Lora hashes` entry: 12 hex digits, of the tensor data for .safetensors, else of the file."""
    kind = "safetensors-data" if str(path).lower().endswith(".safetensors") else "file"
    return sha256(path, kind)[:12]


def embedding_hash(path: str | os.PathLike[str]) -> str:
    """A1111's `TI hashes` entry: the first 12 hex digits of the embedding file's SHA-256."""
    return sha256(path)[:12]
