"""Model downloads from the Hugging Face Hub and the local cache: plan, fetch, find again offline.

Library code: nothing here prints. Settings are read from the environment at call time (HF_ENDPOINT, HF_HOME,
HF_HUB_CACHE, HF_HUB_OFFLINE, HF_HUB_ETAG_TIMEOUT) and handed to huggingface_hub explicitly, because the
library freezes them into `huggingface_hub.constants` when first imported. Tokens are never passed by sdcli:
huggingface_hub finds HF_TOKEN or the `hf auth login` token itself. No torch/diffusers imports here.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdcli.errors import ModelUnavailable, OutputError
from sdcli.hub.cache import (
    cached_commit,
    cached_listing,
    hub_cache_dir,
    snapshot_folder,
    write_ref,
)
from sdcli.hub.errors import hub_errors, not_cached
from sdcli.hub.selection import MODEL_INDEX, missing_weights, read_model_index, select_files
from sdcli.hub.settings import etag_timeout, hub_endpoint, is_offline

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class DownloadPlan:
    repo_id: str
    revision: str
    commit: str
    files: tuple[tuple[str, int], ...]  # (path in repo, size in bytes)
    total_bytes: int
    pipeline: bool = True  # has model_index.json; False: a plain repo, top-level files were taken
    missing_weights: tuple[str, ...] = ()  # components left without safetensors weights by the selection
    cached: bool = False  # planned from the local cache (offline): download() makes no request

    def to_json(self) -> dict[str, Any]:
        return _files_json(self.repo_id, self.revision, self.commit, self.files, self.total_bytes)


@dataclass(frozen=True)
class DownloadResult:
    repo_id: str
    revision: str
    commit: str
    files: tuple[tuple[str, int], ...]
    bytes: int
    path: Path
    pipeline: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            **_files_json(self.repo_id, self.revision, self.commit, self.files, self.bytes),
            "path": str(self.path),
        }


def _files_json(
    repo_id: str, revision: str, commit: str, files: tuple[tuple[str, int], ...], total: int
) -> dict[str, Any]:
    return {
        "repo": repo_id,
        "revision": revision,
        "commit": commit,
        "files": [{"path": p, "size": s} for p, s in files],
        "bytes": total,
    }


# --- environment --------------------------------------------------------------------------------


# --- planning -----------------------------------------------------------------------------------
def plan_download(
    repo_id: str,
    *,
    revision: str | None = None,
    variant: str | None = None,
    include: list[str] | tuple[str, ...] = (),
    exclude: list[str] | tuple[str, ...] = (),
    everything: bool = False,
    config_only: bool = False,
    token: str | None = None,
) -> DownloadPlan:
    """What `download` would fetch for generation (see `select_files`); from the cache when offline."""
    choose = functools.partial(
        select_files,
        variant=variant,
        include=include,
        exclude=exclude,
        everything=everything,
        config_only=config_only,
    )
    if is_offline():
        return _plan_from_cache(repo_id, revision, choose)
    with hub_errors(repo_id, revision=revision):
        commit, sizes = _remote_listing(repo_id, revision, token)
        index = (
            _fetch_model_index(repo_id, commit, token) if MODEL_INDEX in sizes and not everything else None
        )
    selected = choose(list(sizes), index)
    if not selected:
        raise ModelUnavailable(
            f"nothing to download from '{repo_id}': no file matches the selection",
            hint="sdcli loads safetensors weights; see every file with `sdcli download "
            f"{repo_id} --all --dry-run` and pick some with --include",
        )
    missing = tuple(missing_weights(list(sizes), selected, index))
    return _plan(repo_id, revision, commit, selected, sizes, MODEL_INDEX in sizes, missing)


def plan_files(repo_id: str, filenames: list[str], *, revision: str | None = None) -> DownloadPlan:
    """A plan for named files (single-file checkpoints, LoRAs); each must exist in the repo."""
    if is_offline():
        return _plan_from_cache(repo_id, revision, lambda files, index: sorted(set(filenames)))
    with hub_errors(repo_id, revision=revision):
        commit, sizes = _remote_listing(repo_id, revision, None)
    for name in filenames:
        if name not in sizes:
            raise ModelUnavailable(
                f"'{name}' is not a file of '{repo_id}' at revision {revision or 'main'}",
                hint=f"list the repo's files with `sdcli download {repo_id} --all --dry-run`",
            )
    return _plan(repo_id, revision, commit, sorted(set(filenames)), sizes, MODEL_INDEX in sizes, ())


def _plan(
    repo_id: str,
    revision: str | None,
    commit: str,
    selected: list[str],
    sizes: dict[str, int],
    pipeline: bool,
    missing: tuple[str, ...],
    cached: bool = False,
) -> DownloadPlan:
    files = tuple((path, sizes.get(path, 0)) for path in selected)
    total = sum(size for _, size in files)
    return DownloadPlan(repo_id, revision or "main", commit, files, total, pipeline, missing, cached)


def _remote_listing(repo_id: str, revision: str | None, token: str | None) -> tuple[str, dict[str, int]]:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_endpoint(), token=token)
    info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=etag_timeout())
    if info.sha is None:
        raise ModelUnavailable(f"the Hub at {hub_endpoint()} did not report a commit for '{repo_id}'")
    return info.sha, {s.rfilename: s.size or 0 for s in info.siblings or []}


def _fetch_model_index(repo_id: str, commit: str, token: str | None) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download

    # Into a throw-away folder: planning (and --dry-run) leaves the cache untouched.
    with tempfile.TemporaryDirectory(prefix="sdcli-plan-") as tmp:
        path = hf_hub_download(
            repo_id,
            MODEL_INDEX,
            revision=commit,
            local_dir=tmp,
            cache_dir=hub_cache_dir(),
            endpoint=hub_endpoint(),
            etag_timeout=etag_timeout(),
            token=token,
            tqdm_class=_progress_bar_class(None, 0),
        )
        return _read_model_index(Path(str(path)), repo_id)


def _read_model_index(path: Path, repo_id: str) -> dict[str, Any]:
    try:
        return read_model_index(path)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"model_index.json of '{repo_id}' cannot be read: {exc}") from exc


# --- downloading --------------------------------------------------------------------------------
def download(
    plan: DownloadPlan, *, to: Path | None = None, progress: Progress | None = None
) -> DownloadResult:
    """Fetch the plan's files into the HF cache (returns the snapshot folder) or into the plain folder `to`.

    Files already present are not fetched again; an interrupted run leaves no partial file behind
    (huggingface_hub writes each file to a temporary name and renames it when complete), so rerunning is safe.
    """
    if plan.cached or is_offline():
        return _result_from_cache(plan, to)
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    target = _prepare_target(to)
    # Exact names, escaped: allow_patterns are globs, and a "[" in a file name must not act as one.
    patterns = [glob.escape(path) for path, _ in plan.files]
    with hub_errors(plan.repo_id, revision=plan.revision, target=target or cache):
        folder = snapshot_download(
            plan.repo_id,
            revision=plan.commit,  # pinned: the files are those the plan listed, even if the branch moves
            allow_patterns=patterns,
            cache_dir=cache,
            local_dir=target,
            endpoint=hub_endpoint(),
            etag_timeout=etag_timeout(),
            tqdm_class=_progress_bar_class(progress, plan.total_bytes),
        )
        if target is None:
            write_ref(plan.repo_id, plan.revision, plan.commit)
    return _result(plan, Path(folder))


def download_files(
    repo_id: str,
    filenames: list[str],
    *,
    revision: str | None = None,
    to: Path | None = None,
    progress: Progress | None = None,
) -> DownloadResult:
    """The `sdcli download REPO FILE...` form: exactly these files."""
    return download(plan_files(repo_id, filenames, revision=revision), to=to, progress=progress)


def ensure_local(
    repo_id: str, *, revision: str | None = None, variant: str | None = None, progress: Progress | None = None
) -> tuple[Path, str | None]:
    """(snapshot folder, commit) of a pipeline with what generation needs, downloading it when not cached."""
    try:
        plan = _plan_from_cache(repo_id, revision, functools.partial(select_files, variant=variant))
        return _result_from_cache(plan, None).path, plan.commit
    except ModelUnavailable:
        if is_offline():
            raise
    result = download(plan_download(repo_id, revision=revision, variant=variant), progress=progress)
    return result.path, result.commit


def _result(plan: DownloadPlan, path: Path) -> DownloadResult:
    return DownloadResult(
        plan.repo_id, plan.revision, plan.commit, plan.files, plan.total_bytes, path, plan.pipeline
    )


def _prepare_target(to: Path | None) -> Path | None:
    if to is None:
        return None
    target = to.expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise OutputError(f"cannot download into {target}: it exists and is not a folder")
    with hub_errors("", target=target):
        target.mkdir(parents=True, exist_ok=True)
    if not os.access(target, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write to {target}: permission denied", hint="choose another folder with --to"
        )
    return target


def _progress_bar_class(progress: Progress | None, total: int) -> type:
    """A tqdm stand-in for huggingface_hub: keeps its own bars off stderr and reports bytes to `progress`.

    snapshot_download makes two byte bars (network and disk; equal for plain HTTP) and a file-count bar;
    the byte count reported is the larger of the byte bars.
    """
    lock = threading.Lock()
    done = [0]

    class _Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.total = kwargs.get("total")
            self.n = kwargs.get("initial") or 0
            self.counts_bytes = kwargs.get("unit") == "B"
            self.format_dict: dict[str, Any] = {"rate": None}

        def update(self, n: float | None = 1) -> None:
            self.n += n or 0
            if not (self.counts_bytes and progress):
                return
            with lock:
                advanced = self.n > done[0]
                done[0] = max(done[0], int(self.n))
                value = done[0]
            if advanced:
                progress(min(value, total) if total else value, total)

        def __enter__(self) -> _Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def noop(self, *args: Any, **kwargs: Any) -> None:
            pass

        close = refresh = set_description = set_description_str = set_postfix_str = noop

    return _Bar


def _plan_from_cache(
    repo_id: str, revision: str | None, choose: Callable[[list[str], dict | None], list[str]]
) -> DownloadPlan:
    commit = cached_commit(repo_id, revision)
    if commit is None:
        raise not_cached(repo_id)
    snapshot = snapshot_folder(repo_id, commit)
    sizes = cached_listing(repo_id, commit)
    index_path = snapshot / MODEL_INDEX
    index = _read_model_index(index_path, repo_id) if index_path.is_file() else None
    selected = choose(list(sizes), index)
    absent = [p for p in selected if not (snapshot / p).is_file()]
    if absent or not selected:
        raise not_cached(repo_id, absent)
    missing = tuple(missing_weights(list(sizes), selected, index))
    return _plan(repo_id, revision, commit, selected, sizes, index is not None, missing, cached=True)


def _result_from_cache(plan: DownloadPlan, to: Path | None) -> DownloadResult:
    snapshot = snapshot_folder(plan.repo_id, plan.commit)
    absent = [p for p, _ in plan.files if not (snapshot / p).is_file()]
    if absent:
        raise not_cached(plan.repo_id, absent)
    target = _prepare_target(to)
    if target is None:
        return _result(plan, snapshot)
    with hub_errors(plan.repo_id, target=target):
        for path, _ in plan.files:
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(snapshot / path, target / path)  # follows the cache's symlinks: plain files
    return _result(plan, target)
