"""The Hugging Face cache on disk, read without any HTTP request.

Layout (huggingface_hub's): `<cache>/models--owner--name/{refs/<branch>, snapshots/<commit>/..., blobs/,
trees/<commit>.json}`. Reading it directly, instead of through `snapshot_download(local_files_only=True)`,
lets a partial download (only the files generation needs) count as cached: the library would call such a
snapshot incomplete against the full tree listing it keeps.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The HF hub cache as huggingface_hub would compute it from the environment as it is now (the library
    itself reads these variables once, at import)."""
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if value := env.get(name):
            return Path(os.path.expandvars(value)).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def repo_folder(repo_id: str) -> Path:
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def snapshot_folder(repo_id: str, commit: str) -> Path:
    return repo_folder(repo_id) / "snapshots" / commit


def cached_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a branch/tag/commit resolves to in the cache, if that snapshot folder exists."""
    storage = repo_folder(repo_id)
    rev = revision or "main"
    if _COMMIT.match(rev):
        return rev if (storage / "snapshots" / rev).is_dir() else None
    ref = storage / "refs" / rev
    if ref.is_file():
        commit = ref.read_text().strip()
        return commit if (storage / "snapshots" / commit).is_dir() else None
    if revision is None:  # fetched by commit only: fall back to the newest snapshot
        snapshots = [p for p in (storage / "snapshots").glob("*") if p.is_dir()]
        return max(snapshots, key=lambda p: p.stat().st_mtime).name if snapshots else None
    return None


def resolve_cached(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of `repo_id` at `revision` (default: main), without any HTTP request."""
    if not repo_id or repo_id.startswith(("/", ".")) or repo_id.count("/") > 1:
        return None
    commit = cached_commit(repo_id, revision)
    return snapshot_folder(repo_id, commit) if commit else None


def cached_listing(repo_id: str, commit: str) -> dict[str, int]:
    """All files of the repo at `commit` with sizes: the tree listing huggingface_hub cached when the
    snapshot was downloaded, or what the snapshot folder holds when there is no such listing."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        tree = get_cached_repo_tree(repo_id, revision=commit, cache_dir=hub_cache_dir())
        return {f.path: f.size for f in tree}
    except CachedRepoTreeNotFoundError:
        snapshot = snapshot_folder(repo_id, commit)
        files = (p for p in snapshot.rglob("*") if p.is_file())
        return {p.relative_to(snapshot).as_posix(): p.stat().st_size for p in files}


def write_ref(repo_id: str, revision: str, commit: str) -> None:
    """Record branch/tag -> commit as huggingface_hub does, so `main` resolves offline.

    Needed because sdcli downloads pinned to the commit it planned with, and a commit-pinned
    snapshot_download writes no ref.
    """
    if revision == commit:
        return
    ref = repo_folder(repo_id) / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    if ref.is_file() and ref.read_text().strip() == commit:
        return
    tmp = ref.with_name(f"{ref.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref)  # atomic: a concurrent reader never sees an empty ref
