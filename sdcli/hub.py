"""Hugging Face Hub access (temporary minimal version; replaced by the download work)."""

from __future__ import annotations

import os
from pathlib import Path

from sdcli.errors import ModelUnavailable


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def set_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"


def ensure_local(repo_id: str, *, revision: str | None, variant: str | None) -> tuple[Path, str | None]:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
        return folder, folder.name
    except Exception:
        pass
    if is_offline():
        raise ModelUnavailable(
            f"{repo_id} is not in the local cache; run `sdcli download {repo_id}` where there is network"
        )
    try:
        folder = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=["*.json", "*.txt", "*.safetensors"])
        )
    except Exception as exc:
        raise ModelUnavailable(f"cannot get {repo_id} from the Hub: {exc}".splitlines()[0]) from exc
    return folder, folder.name
