"""What the local Hub stand-in serves: repos read from folders, the JSON shapes of the Hub API, fake repos.

Shapes follow what huggingface_hub 2.x parses (`ModelInfo`, `RepoFile`, `RepoFolder`); ids follow git/LFS:
the blob id of an LFS file is the sha1 of its pointer, its ETag the sha256 of its content.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx", ".msgpack", ".h5", ".gguf")


class HubError(Exception):
    """An error answer: status, `X-Error-Code` (what huggingface_hub maps to its exception types), message."""

    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


@dataclass(frozen=True)
class RepoFileEntry:
    path: str
    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        spec = "version https://git-lfs.github.com/spec/v1"
        return f"{spec}\noid sha256:{self.sha256}\nsize {self.size}\n".encode()

    @property
    def blob_id(self) -> str:
        """Git blob sha1 of what git stores: the content, or the LFS pointer for LFS files."""
        stored = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class Snapshot:
    commit: str
    files: dict[str, RepoFileEntry]


@dataclass
class Repo:
    repo_id: str
    gated: bool = False
    private: bool = False
    revisions: dict[str, Snapshot] = field(default_factory=dict)

    def snapshot(self, revision: str) -> Snapshot | None:
        if revision in self.revisions:
            return self.revisions[revision]
        return next((s for s in self.revisions.values() if s.commit == revision), None)


def read_folder(folder: Path) -> dict[str, RepoFileEntry]:
    files = {}
    for item in sorted(folder.rglob("*")):
        if item.is_file():
            rel = item.relative_to(folder).as_posix()
            files[rel] = RepoFileEntry(rel, item.read_bytes(), lfs=rel.endswith(LFS_SUFFIXES))
    return files


def commit_sha(repo_id: str, revision: str, files: dict[str, RepoFileEntry]) -> str:
    """Deterministic per content, like a git commit: the same folder always gets the same sha."""
    digest = hashlib.sha1(f"{repo_id}@{revision}".encode())
    for path, entry in sorted(files.items()):
        digest.update(f"{path}:{entry.etag}\n".encode())
    return digest.hexdigest()


# --- payloads (shapes as the Hub sends them, as far as huggingface_hub parses them) -------------
def file_json(entry: RepoFileEntry) -> dict:
    info: dict = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": entry.path}
    if entry.lfs:
        info["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
    return info


def folder_json(path: str) -> dict:
    return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}


def model_info(repo: Repo, snap: Snapshot, *, blobs: bool) -> dict:
    siblings = []
    for entry in snap.files.values():
        sibling: dict = {"rfilename": entry.path}
        if blobs:
            sibling |= {"size": entry.size, "blobId": entry.blob_id}
            if entry.lfs:
                sibling["lfs"] = {
                    "size": entry.size,
                    "sha256": entry.sha256,
                    "pointerSize": len(entry.pointer),
                }
        siblings.append(sibling)
    return {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "sha": snap.commit,
        "private": repo.private,
        "gated": "auto" if repo.gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": ["diffusers"] if "model_index.json" in snap.files else [],
        "library_name": "diffusers" if "model_index.json" in snap.files else None,
        "siblings": siblings,
    }


def _folders(paths: list[str]) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}


def tree_listing(snap: Snapshot, path: str, recursive: bool) -> list[dict]:
    paths = list(snap.files)
    folders = _folders(paths)
    if path and path not in folders:
        raise HubError(404, "EntryNotFound", f"{path} does not exist", commit=snap.commit)
    prefix = f"{path}/" if path else ""

    def wanted(p: str) -> bool:
        return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

    listing = [folder_json(f) for f in sorted(folders) if wanted(f)]
    return listing + [file_json(snap.files[p]) for p in sorted(paths) if wanted(p)]


def paths_info(snap: Snapshot, paths: list[str]) -> list[dict]:
    folders = _folders(list(snap.files))
    found = []
    for path in paths:
        if path in snap.files:
            found.append(file_json(snap.files[path]))
        elif path in folders:
            found.append(folder_json(path))
    return found


# --- fixture repos ------------------------------------------------------------------------------
BIG_FILE = "unet/diffusion_pytorch_model.safetensors"  # ~2 MB, so an interrupted transfer means something
COMPONENTS = {
    "unet": ("diffusers", "UNet2DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "scheduler": ("diffusers", "PNDMScheduler"),
}


def _blob(seed: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes: different per file, identical across runs."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def _write(folder: Path, rel: str, data: bytes | str) -> None:
    target = folder / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode() if isinstance(data, str) else data)


def make_diffusers_repo(folder: Path, *, big_size: int = 2 * 1024 * 1024) -> Path:
    """A fake Stable Diffusion repo laid out like the real ones, with every weight format they ship."""
    index: dict[str, object] = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0"}
    index |= {name: list(pair) for name, pair in COMPONENTS.items()}
    index |= {
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    _write(folder, "model_index.json", json.dumps(index, indent=2))
    _write(folder, "README.md", "---\nlicense: openrail\n---\n# tiny fake pipeline\n")
    _write(folder, "v1-5-pruned.ckpt", _blob("ckpt", 5000))
    _write(folder, "v1-5-pruned.safetensors", _blob("single", 5000))
    for name in ("unet", "vae"):
        _write(folder, f"{name}/config.json", json.dumps({"_class_name": COMPONENTS[name][1]}))
        _write(
            folder,
            f"{name}/diffusion_pytorch_model.safetensors",
            _blob(name, big_size if name == "unet" else 3000),
        )
        _write(folder, f"{name}/diffusion_pytorch_model.fp16.safetensors", _blob(f"{name}16", 1500))
        _write(folder, f"{name}/diffusion_pytorch_model.bin", _blob(f"{name}bin", 3000))
        _write(folder, f"{name}/diffusion_pytorch_model.fp16.bin", _blob(f"{name}bin16", 1500))
        _write(folder, f"{name}/diffusion_pytorch_model.msgpack", _blob(f"{name}flax", 3000))
        _write(folder, f"{name}/model.onnx", _blob(f"{name}onnx", 2000))
    _write(folder, "text_encoder/config.json", json.dumps({"architectures": ["CLIPTextModel"]}))
    _write(folder, "text_encoder/model.safetensors", _blob("te", 4000))
    _write(folder, "text_encoder/model.fp16.safetensors", _blob("te16", 2000))
    _write(folder, "text_encoder/pytorch_model.bin", _blob("tebin", 4000))
    _write(folder, "text_encoder/flax_model.msgpack", _blob("teflax", 4000))
    _write(folder, "text_encoder/model.onnx", _blob("teonnx", 2000))
    _write(folder, "tokenizer/vocab.json", json.dumps({"a": 0, "b": 1}))
    _write(folder, "tokenizer/merges.txt", "#version: 0.2\na b\n")
    _write(folder, "tokenizer/tokenizer_config.json", json.dumps({"model_max_length": 77}))
    _write(folder, "tokenizer/special_tokens_map.json", json.dumps({"bos_token": "<|startoftext|>"}))
    _write(folder, "scheduler/scheduler_config.json", json.dumps({"_class_name": "PNDMScheduler"}))
    _write(folder, "stray/diffusion_pytorch_model.safetensors", _blob("stray", 1000))  # not in model_index
    return folder


def make_plain_repo(folder: Path) -> Path:
    """A repo that is not a diffusers pipeline: a LoRA with a config, as many LoRA repos are."""
    _write(folder, "README.md", "# a LoRA\n")
    _write(folder, "pytorch_lora_weights.safetensors", _blob("lora", 3000))
    _write(folder, "pytorch_lora_weights.bin", _blob("lorabin", 3000))
    _write(folder, "config.json", json.dumps({"rank": 4}))
    _write(folder, "extra/notes.txt", "nested files are not part of a plain repo's default selection\n")
    return folder
