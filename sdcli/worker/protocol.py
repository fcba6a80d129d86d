"""What the CLI and a warm worker (`sdcli serve`) say to each other, and where the worker listens.

Pure data and path work: neither side imports torch here. A run's request is JSON: the validated
ModelRequest, the jobs with the file names the client planned (relative to one output root the client
names) and the writing flags. The worker answers with one JSON event per line (NDJSON): `loading`,
`loaded`, `step`, `image`, then `done` or `error`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import asdict, fields
from pathlib import Path, PurePosixPath
from typing import Any

from sdcli.core.requests import GenerationRequest, MemoryOptions, ModelRequest
from sdcli.core.specs import EmbeddingSpec, LoraSpec
from sdcli.errors import UsageError

PROTOCOL = 1
RUN_PATH = "/sdcli/v1/run"
HEALTH_PATH = "/sdcli/v1/health"
MAX_BODY_BYTES = 1 << 20  # a request is a few kB of JSON; images never travel client -> worker
MAX_JOBS = 10_000
MAX_IMAGES = 100_000
SOCKET_NAME = "worker.sock"
ENV_WORKER = "SDCLI_WORKER"  # a socket path, or "off"
ENV_TOKEN = "SDCLI_WORKER_TOKEN"  # the bearer token of a TCP listener (never printed)


class BadRequest(UsageError):
    """A request the worker refuses before running anything (HTTP 400, the client exits 2)."""


def runtime_folder(create: bool = False) -> Path:
    """`$XDG_RUNTIME_DIR/sdcli`, else a 0700 folder of this user's under the temp dir. An existing folder
    that another user owns, or that others may enter, is refused: it could hold a socket that is not ours."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        folder = Path(xdg) / "sdcli"
    else:
        folder = Path(tempfile.gettempdir()) / f"sdcli-{os.getuid()}"
    if create:
        folder.mkdir(mode=0o700, parents=False, exist_ok=True)
    if folder.exists():
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise UsageError(
                f"{folder} is not a private folder of this user (mode 0700)",
                hint=f"remove it, or point {ENV_WORKER} at a socket elsewhere",
            )
    return folder


def default_socket() -> Path:
    return runtime_folder() / SOCKET_NAME


# -- requests as JSON ------------------------------------------------------------------------------------


def model_to_json(model: ModelRequest) -> dict[str, Any]:
    return asdict(model)


def model_from_json(data: Any) -> ModelRequest:
    data = as_object(data, "model")
    known = {f.name for f in fields(ModelRequest)}
    no_unknown(data, known, "model")
    values = dict(data)
    if values.get("controlnets"):  # the client never sends them (it runs ControlNets itself); nor may others
        raise BadRequest("model.controlnets: the worker does not run ControlNets")
    values.pop("controlnets", None)
    if values.get("ip_adapters") or values.get("ip_image_encoder"):  # nor IP-Adapters, for the same reason
        raise BadRequest("model.ip_adapters: the worker does not run IP-Adapters")
    values.pop("ip_adapters", None)
    values.pop("ip_image_encoder", None)
    if values.get("refiner") is not None:  # nor refiners: a second model the worker would have to load
        raise BadRequest("model.refiner: the worker does not run refiners")
    values.pop("refiner", None)
    try:
        if "memory" in values:
            memory = as_object(values["memory"], "model.memory")
            no_unknown(memory, {f.name for f in fields(MemoryOptions)}, "model.memory")
            values["memory"] = MemoryOptions(**memory)
        values["loras"] = tuple(LoraSpec(**as_object(x, "lora")) for x in values.get("loras") or ())
        values["embeddings"] = tuple(
            EmbeddingSpec(**as_object(x, "embedding")) for x in values.get("embeddings") or ()
        )
        state = values.get("scheduler_state")
        if state is not None:
            if not (isinstance(state, list) and len(state) == 2 and isinstance(state[1], dict)):
                raise BadRequest("model.scheduler_state must be [class, config]")
            values["scheduler_state"] = (str(state[0]), state[1])
        request = ModelRequest(**values)
    except TypeError as exc:
        raise BadRequest(f"bad model request: {exc}") from exc
    _check_types(request, "model")
    return request.validated()


def generation_to_json(request: GenerationRequest) -> dict[str, Any]:
    return {**asdict(request), "defaulted": sorted(request.defaulted)}


def generation_from_json(data: Any) -> GenerationRequest:
    data = as_object(data, "request")
    no_unknown(data, {f.name for f in fields(GenerationRequest)}, "request")
    if data.get("seed") is None:
        raise BadRequest("request.seed is required (the client draws it)")
    defaulted = data.get("defaulted", [])
    if not isinstance(defaulted, list) or not all(isinstance(name, str) for name in defaulted):
        raise BadRequest("request.defaulted must be a list of option names")
    try:
        request = GenerationRequest(**{**data, "defaulted": frozenset(defaulted)})
    except TypeError as exc:
        raise BadRequest(f"bad generation request: {exc}") from exc
    _check_types(request, "request")
    return request.validated()


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def no_unknown(data: dict[str, Any], known: set[str], what: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadRequest(f"{what}: unknown field(s) {', '.join(unknown)}")


_SIMPLE: dict[str, Any] = {"str": str, "int": int, "float": (int, float), "bool": bool}


def _check_types(obj: Any, what: str) -> None:
    """Plain fields must hold what their annotation says (`None` where it allows it)."""
    for f in fields(obj):
        annotation = str(f.type)
        value = getattr(obj, f.name)
        parts = [p.strip() for p in annotation.split("|")]
        if value is None:
            if "None" not in parts:
                raise BadRequest(f"{what}.{f.name} must not be null")
            continue
        simple = [_SIMPLE[p] for p in parts if p in _SIMPLE]
        if not simple:
            continue
        if isinstance(value, bool) and bool not in simple:
            raise BadRequest(f"{what}.{f.name} has the wrong type")
        if not any(isinstance(value, t) for t in simple):
            raise BadRequest(f"{what}.{f.name} has the wrong type")


def relative_name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def safe_target(root: Path, name: Any) -> Path:
    """Where the worker may write `name`: inside `root`, resolved. `..`, absolute names and folders that
    are symlinks out of the root are refused."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        raise BadRequest("every path must be a non-empty relative name")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("..", ".", "") for part in pure.parts):
        raise BadRequest(f"path {name!r} leaves the output folder")
    if pure.suffix.lower() != ".png":
        raise BadRequest(f"path {name!r} is not a .png file")
    real_root = root.resolve()
    target = real_root.joinpath(*pure.parts)
    # The nearest existing folder must resolve inside the root (no symlinked folder pointing out).
    parent = target.parent
    while not parent.exists() and parent != real_root:
        parent = parent.parent
    if not parent.resolve().is_relative_to(real_root):
        raise BadRequest(f"path {name!r} leads out of the output folder")
    if target.is_symlink():
        raise BadRequest(f"path {name!r} is a symbolic link")
    return target


def check_root(value: Any) -> Path:
    if not isinstance(value, str) or not os.path.isabs(value) or "\x00" in value:
        raise BadRequest("root must be an absolute folder")
    return Path(value)
