"""The CLI's side of a warm worker: find a running `sdcli serve`, send it a planned run, and turn its event
stream back into the `Written` results the local loop gives, so the command prints the same bytes.

Standard library only (http.client over a Unix socket): a warm call must not import torch, nor pay for an
HTTP client library.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sdcli import __version__
from sdcli.errors import ExitCode, SdcliError
from sdcli.worker import protocol

if TYPE_CHECKING:
    from sdcli.generation.distributed import Processes
    from sdcli.generation.jobs import RunPlan, Written

CONNECT_TIMEOUT = 2.0
LOST_HINT = "every image reported above is complete; run again, or with --no-worker to run here"


class WorkerError(SdcliError):
    """A failure the worker reported, with the exit code a local run would have had."""

    def __init__(self, message: str, hint: str | None = None, code: int = int(ExitCode.FAILURE)) -> None:
        super().__init__(message, hint)
        try:
            self.exit_code = ExitCode(code)
        except ValueError:
            self.exit_code = ExitCode.FAILURE


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = CONNECT_TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def socket_path() -> Path | None:
    """The worker's socket: `SDCLI_WORKER` (`off` for none), else the default one when it exists."""
    chosen = os.environ.get(protocol.ENV_WORKER, "").strip()
    if chosen.lower() in ("off", "0", "no", "none", "false"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    try:
        path = protocol.default_socket()
    except SdcliError:
        return None  # a folder that is not ours: never talk to a socket in it
    return path if path.exists() else None


class Hooks(Protocol):
    """What the command's reporter does before and between images (commands.common.RunHooks)."""

    def loading(self) -> None: ...

    def loaded(self, notes: tuple[str, ...]) -> None: ...

    def step(self, done: int, of: int) -> None: ...


def find(plan: RunPlan, processes: Processes) -> Worker | None:
    """A worker to run `plan`, or None to run here. Multi-process runs, and jobs whose inputs a worker
    could not read itself, run here, as does everything when no worker answers."""
    if processes.count > 1 or not plan.jobs:
        return None
    if any(job.read_inputs is not None and job.remote is None for job in plan.jobs):
        return None
    path = socket_path()
    if path is None:
        return None
    connection = UnixConnection(str(path))
    try:
        connection.connect()
    except OSError:
        connection.close()
        if os.environ.get(protocol.ENV_WORKER, "").strip():
            raise WorkerError(
                f"no worker answers on {path}",
                hint=f"start one with `sdcli serve`, or unset {protocol.ENV_WORKER}",
            ) from None
        return None  # a stale socket left by a worker that died: run here
    return Worker(connection)


def run_request(plan: RunPlan) -> tuple[dict[str, Any], list[list[Path]]]:
    """The JSON the worker gets: absolute names under one root folder, so it needs neither our working
    folder nor our template."""
    planned = [[Path(os.path.abspath(p)) for p in job.paths] for job in plan.jobs]
    folders = {str(p.parent) for paths in planned for p in paths}
    root = Path(os.path.commonpath(sorted(folders)))
    body = {
        "protocol": protocol.PROTOCOL,
        "version": __version__,
        "model": protocol.model_to_json(plan.model),
        "task": plan.task,
        "root": str(root),
        "overwrite": plan.outputs.overwrite,
        "explicit": plan.outputs.explicit,
        "with_metadata": plan.with_metadata,
        "keep_filtered": plan.keep_filtered,
        # --offline has set HF_HUB_OFFLINE (plan_run); huggingface_hub's own spellings of true count too.
        "offline": os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"),
        "jobs": [
            {
                "request": protocol.generation_to_json(job.request),
                "paths": [protocol.relative_name(p, root) for p in paths],
                "line": job.line,
                **({"inputs": job.remote} if job.remote is not None else {}),
            }
            for job, paths in zip(plan.jobs, planned, strict=True)
        ],
    }
    return body, planned


class Worker:
    def __init__(self, connection: UnixConnection) -> None:
        self.connection = connection

    def run(self, plan: RunPlan, hooks: Hooks) -> Iterator[Written]:
        from sdcli.generation.jobs import Written

        body, planned = run_request(plan)
        payload = json.dumps(body).encode()
        pending = {p for paths in planned for p in paths}
        hooks.loading()
        try:
            try:
                self.connection.request(
                    "POST",
                    protocol.RUN_PATH,
                    body=payload,
                    headers={"Content-Type": "application/json", "Accept": "application/x-ndjson"},
                )
                self.connection.sock.settimeout(None)  # a model may load for minutes
                response = self.connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise WorkerError(f"the worker did not take the request: {exc}", hint=LOST_HINT) from None
            if response.status != 200:
                raise refused(response)
            while True:
                try:
                    line = response.readline(protocol.MAX_BODY_BYTES * 16)
                except (OSError, http.client.HTTPException):
                    line = b""
                if not line:
                    break
                event = json.loads(line)
                kind = event.get("event")
                if kind == "loaded":
                    hooks.loaded(tuple(event.get("notes") or ()))
                elif kind == "step":
                    hooks.step(int(event["done"]), int(event["of"]))
                elif kind == "image":
                    job = plan.jobs[event["job"]]
                    planned_path = job.paths[event["index"] - job.request.first_index]
                    written = event.get("path")
                    # The worker may have added `_1` or `-nsfw`: same folder, its file name.
                    path = planned_path.with_name(Path(written).name) if written else None
                    pending.discard(planned[event["job"]][event["index"] - job.request.first_index])
                    yield Written(
                        path,
                        event["seed"],
                        event["index"],
                        event["line"],
                        event["seconds"],
                        event["record"],
                        tuple(event.get("notes") or ()),
                        job.source,
                        event.get("error"),
                    )
                elif kind == "error":
                    raise WorkerError(
                        event.get("message", "the worker failed"), event.get("hint"), event["exit"]
                    )
                elif kind == "done":
                    return
            remove_partial(pending)
            raise WorkerError("the worker stopped before the run finished", hint=LOST_HINT)
        finally:
            # Also on Ctrl-C or SIGTERM: a closed connection cancels the run on the worker before its next
            # denoising step.
            self.connection.close()


def refused(response: http.client.HTTPResponse) -> WorkerError:
    text = response.read(64 * 1024).decode("utf-8", "replace")
    try:
        message = json.loads(text).get("error") or text
    except (ValueError, AttributeError):
        message = text
    message = (message.strip().splitlines() or [f"HTTP {response.status}"])[0]
    code = ExitCode.USAGE if 400 <= response.status < 500 else ExitCode.FAILURE
    return WorkerError(f"the worker refused the request: {message}", code=int(code))


def remove_partial(paths: set[Path]) -> None:
    """A worker killed while writing can leave its temporary file (`.<stem>.<random>.tmp`, never the final
    name) next to a planned image: remove those, so a crash leaves no partial file behind."""
    for path in paths:
        prefix = f".{path.stem[:40]}."
        try:
            entries = list(path.parent.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp") and not entry.is_symlink():
                with contextlib.suppress(OSError):
                    entry.unlink()
