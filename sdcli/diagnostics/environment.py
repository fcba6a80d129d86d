"""What sdcli will run on: package versions, devices, the device/dtype choice, cached pipelines, settings.

Plain functions returning frozen dataclasses, so `sdcli info` only prints them and tests call them directly.
Versions come from package metadata, never from importing the packages: importing diffusers' pipelines costs
seconds, and the report must stay under twice the time of `import torch` (torch itself is needed for devices).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from sdcli import __version__

# The stack sdcli depends on, then extras that change how it runs when present.
PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "huggingface_hub",
    "safetensors",
    "pillow",
)
EXTRAS = ("xformers", "peft", "compel")
# Settings whose value could be a credential are reported as set, never shown.
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "AUTH")
HIDDEN = "(hidden)"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: str  # "8.6"; ROCm devices report their own numbering
    total_bytes: int
    free_bytes: int | None  # None when the driver would not say
    bf16: bool


@dataclass(frozen=True)
class TorchBuild:
    version: str
    cuda: str | None  # the CUDA toolkit torch was built with; None on CPU and ROCm builds
    cudnn: str | None
    rocm: str | None


@dataclass(frozen=True)
class Devices:
    gpus: tuple[Gpu, ...]
    mps: bool
    cpu_threads: int  # torch's intra-op threads, what CPU inference actually uses
    cpu_count: int | None


@dataclass(frozen=True)
class Choice:
    """What `--device X --dtype Y` resolve to here; `error` says why the requested device is not there."""

    device_option: str
    dtype_option: str
    device: str | None
    dtype: str | None
    reason: str
    error: str | None = None


@dataclass(frozen=True)
class CachedRevision:
    commit: str
    refs: tuple[str, ...]


@dataclass(frozen=True)
class CachedPipeline:
    repo_id: str
    pipeline: str | None  # `_class_name` from model_index.json
    revisions: tuple[CachedRevision, ...]
    size_bytes: int
    path: Path


@dataclass(frozen=True)
class Cache:
    path: Path
    exists: bool
    offline: bool
    pipelines: tuple[CachedPipeline, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Environment:
    sdcli: str
    python: str
    platform: str
    packages: dict[str, str | None]  # None: not installed
    torch: TorchBuild
    devices: Devices
    choice: Choice
    cache: Cache
    settings: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        """The `--json` shape; its keys are documented in the README's `## info` section."""
        return {
            "sdcli": self.sdcli,
            "python": self.python,
            "platform": self.platform,
            "packages": dict(self.packages),
            "torch": {
                "version": self.torch.version,
                "cuda": self.torch.cuda,
                "cudnn": self.torch.cudnn,
                "rocm": self.torch.rocm,
            },
            "devices": {
                "cuda": [
                    {
                        "index": gpu.index,
                        "name": gpu.name,
                        "capability": gpu.capability,
                        "total_memory_bytes": gpu.total_bytes,
                        "free_memory_bytes": gpu.free_bytes,
                        "bf16": gpu.bf16,
                    }
                    for gpu in self.devices.gpus
                ],
                "mps": self.devices.mps,
                "cpu_threads": self.devices.cpu_threads,
                "cpu_count": self.devices.cpu_count,
            },
            "choice": {
                "device_option": self.choice.device_option,
                "dtype_option": self.choice.dtype_option,
                "device": self.choice.device,
                "dtype": self.choice.dtype,
                "reason": self.choice.reason,
                "error": self.choice.error,
            },
            "cache": {
                "path": str(self.cache.path),
                "exists": self.cache.exists,
                "offline": self.cache.offline,
                "pipelines": [
                    {
                        "repo_id": p.repo_id,
                        "pipeline": p.pipeline,
                        "revisions": [{"commit": r.commit, "refs": list(r.refs)} for r in p.revisions],
                        "size_bytes": p.size_bytes,
                        "path": str(p.path),
                    }
                    for p in self.cache.pipelines
                ],
                "warnings": list(self.cache.warnings),
            },
            "settings": dict(self.settings),
        }


def package_versions(names: tuple[str, ...] = PACKAGES + EXTRAS) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            found[name] = None
    return found


def _cudnn_version(raw: int | None) -> str | None:
    # cuDNN 9 encodes 9.1.0 as 90100; cuDNN 8 encoded 8.9.2 as 8902.
    if not raw:
        return None
    if raw >= 10000:
        return f"{raw // 10000}.{raw % 10000 // 100}.{raw % 100}"
    return f"{raw // 1000}.{raw % 1000 // 100}.{raw % 100}"


def torch_build() -> TorchBuild:
    import torch

    try:
        cudnn = _cudnn_version(torch.backends.cudnn.version()) if torch.version.cuda else None
    except Exception:  # a broken cuDNN install is worth reporting as missing, not crashing the report
        cudnn = None
    return TorchBuild(
        version=str(torch.__version__),
        cuda=torch.version.cuda,
        cudnn=cudnn,
        rocm=getattr(torch.version, "hip", None),
    )


def _gpu(index: int) -> Gpu:
    import torch

    props = torch.cuda.get_device_properties(index)
    try:
        # Creates a CUDA context (a few hundred ms per GPU): the price of reporting free memory.
        free: int | None = int(torch.cuda.mem_get_info(index)[0])
    except Exception:
        free = None
    if torch.version.hip:
        with torch.cuda.device(index):
            bf16 = bool(torch.cuda.is_bf16_supported(including_emulation=False))
    else:
        # Native bf16 arrived with Ampere (sm_80); older cards only emulate it, slowly.
        bf16 = props.major >= 8
    return Gpu(
        index=index,
        name=str(props.name),
        capability=f"{props.major}.{props.minor}",
        total_bytes=int(props.total_memory),
        free_bytes=free,
        bf16=bf16,
    )


def devices() -> Devices:
    import torch

    from sdcli.model import runtime

    gpus = tuple(_gpu(i) for i in range(torch.cuda.device_count())) if torch.cuda.is_available() else ()
    return Devices(
        gpus=gpus, mps=runtime.mps_available(), cpu_threads=torch.get_num_threads(), cpu_count=os.cpu_count()
    )


def choose(device: str = "auto", dtype: str = "auto", found: Devices | None = None) -> Choice:
    """Resolve the options with the same code `generate` uses, and say why that is the answer."""
    import torch

    from sdcli.errors import DeviceUnavailable
    from sdcli.model import runtime

    found = found or devices()
    try:
        chosen = runtime.resolve_device(device)
    except DeviceUnavailable as exc:
        return Choice(device, dtype, None, None, f"--device {device} was asked for", exc.message)
    chosen_dtype = runtime.dtype_name(runtime.resolve_dtype(dtype, chosen)[0])
    if device != "auto":
        why_device = f"--device {device} was asked for"
    elif chosen.type == "cuda":
        why_device = f"auto picks CUDA first: {found.gpus[0].name}" if found.gpus else "auto picks CUDA first"
    elif chosen.type == "mps":
        why_device = "auto picks MPS when there is no CUDA GPU"
    elif not (torch.version.cuda or getattr(torch.version, "hip", None)):
        why_device = "auto falls back to the CPU: this torch is a CPU-only build"
    else:
        why_device = "auto falls back to the CPU: torch sees no GPU (driver, or CUDA_VISIBLE_DEVICES?)"
    if dtype != "auto":
        why_dtype = f"--dtype {dtype} was asked for"
    elif chosen.type == "cpu":
        why_dtype = "fp32 on CPU (half precision there is slow and lossy)"
    else:
        why_dtype = "fp16 on GPUs (half the memory, fast kernels)"
    return Choice(device, dtype, str(chosen), chosen_dtype, f"{why_device}; {why_dtype}")


def _pipeline_class(snapshot: Path) -> str | None:
    from sdcli.hub.selection import model_index_in

    name = (model_index_in(snapshot) or {}).get("_class_name")
    return str(name) if name is not None else None


def cached_pipelines(cache_dir: Path | None = None) -> Cache:
    """Model repos in the Hub cache whose snapshot holds a model_index.json: the ones diffusers can load."""
    from sdcli.hub.cache import hub_cache_dir
    from sdcli.hub.settings import is_offline

    path = hub_cache_dir() if cache_dir is None else cache_dir
    if not path.is_dir():
        return Cache(path=path, exists=False, offline=is_offline(), pipelines=())
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(path)
    except Exception as exc:  # an unreadable cache is a finding to report, not a reason to fail `info`
        return Cache(path, True, is_offline(), (), (f"cannot scan the cache: {exc}",))
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model":
            continue
        revisions = sorted(
            (r for r in repo.revisions if (r.snapshot_path / "model_index.json").is_file()),
            key=lambda r: ("main" not in r.refs, -r.last_modified),
        )
        if not revisions:
            continue
        found.append(
            CachedPipeline(
                repo_id=repo.repo_id,
                pipeline=_pipeline_class(revisions[0].snapshot_path),
                revisions=tuple(CachedRevision(r.commit_hash, tuple(sorted(r.refs))) for r in revisions),
                size_bytes=int(repo.size_on_disk),
                path=Path(repo.repo_path),
            )
        )
    return Cache(
        path=path,
        exists=True,
        offline=is_offline(),
        pipelines=tuple(found),
        warnings=tuple(str(w) for w in info.warnings),
    )


def settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The `SDCLI_*` variables in effect, values that could be credentials hidden."""
    env = os.environ if environ is None else environ
    return {
        name: HIDDEN if any(marker in name.upper() for marker in SECRET_MARKERS) else value
        for name, value in sorted(env.items())
        if name.upper().startswith("SDCLI_")
    }


def collect(device: str = "auto", dtype: str = "auto") -> Environment:
    found = devices()
    return Environment(
        sdcli=__version__,
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()} ({sys.implementation.name})",
        packages=package_versions(),
        torch=torch_build(),
        devices=found,
        choice=choose(device, dtype, found),
        cache=cached_pipelines(),
        settings=settings(),
    )
