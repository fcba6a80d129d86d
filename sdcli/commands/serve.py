"""`sdcli serve`: a warm worker that keeps models loaded, so each `sdcli generate` skips the start-up.

It listens on a Unix socket only this user can open (`$XDG_RUNTIME_DIR/sdcli/worker.sock`, else a 0700
folder under the temp dir); `generate` finds it there, or where `SDCLI_WORKER` points. TCP only with
`--listen HOST:PORT` and a token in `SDCLI_WORKER_TOKEN` (never on the command line, never printed).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from sdcli.commands import options as opt
from sdcli.commands.console import Output
from sdcli.errors import UsageError

DURATION = re.compile(r"^(-?\d+(?:\.\d+)?)(ms|s|m|h)?$")
SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)$", re.IGNORECASE)
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}
START_TIMEOUT = 120.0


def parse_duration(text: str) -> float:
    """`300`, `90s`, `5m`, `1h`; negative: forever (ollama's keep_alive)."""
    found = DURATION.match(text.strip())
    if not found:
        raise UsageError(
            f"--keep-alive {text!r} is not a duration", hint="use e.g. 30s, 5m, 1h, or -1 (forever)"
        )
    return float(found.group(1)) * UNITS[found.group(2)]


def parse_size(text: str) -> int:
    found = SIZE.match(text.strip())
    if not found:
        raise UsageError(f"--max-memory {text!r} is not a size", hint="use e.g. 8GB or 512MB")
    unit = found.group(2).lower().rstrip("b").rstrip("i")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}[unit]
    return int(float(found.group(1)) * scale)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r} is not HOST:PORT", hint="e.g. --listen 127.0.0.1:7860")
    return host.strip("[]"), int(port)


def wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float) -> bool:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            return True
        except OSError:
            time.sleep(0.1)
        finally:
            probe.close()
    return False


def serve(
    ctx: typer.Context,
    socket_path: Annotated[
        Path | None,
        typer.Option("--socket", help="Unix socket to listen on (default: the user's runtime dir)."),
    ] = None,
    keep_alive: Annotated[
        str,
        typer.Option("--keep-alive", help="Unload a model after it is idle this long (30s, 5m, -1: never)."),
    ] = "5m",
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory", help="Keep loaded models within this size, least recently used out (8GB)."
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option("--listen", help="Also listen on TCP HOST:PORT; needs a token in SDCLI_WORKER_TOKEN."),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Start in the background; print the socket.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing once listening.")] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", envvar="SDCLI_MODEL", help="The model the A1111 and OpenAI HTTP APIs run."
        ),
    ] = None,
    device: opt.Device = "auto",
    dtype: opt.Dtype = "auto",
) -> None:
    """Keep models loaded and serve generate requests on a private Unix socket."""
    from sdcli.worker import protocol

    out = Output(quiet=quiet)
    seconds = parse_duration(keep_alive)
    max_bytes = parse_size(max_memory) if max_memory else None
    address = parse_listen(listen) if listen else None
    from sdcli.core.requests import DEFAULT_MODEL, ModelRequest

    api_model = ModelRequest(model=model or DEFAULT_MODEL, device=device, dtype=dtype).validated()
    token = os.environ.get(protocol.ENV_TOKEN) or None
    if address is not None and not token:
        raise UsageError("--listen needs a token", hint=f"set {protocol.ENV_TOKEN} to a long random secret")
    if socket_path is None:
        socket_path = protocol.runtime_folder(create=True) / protocol.SOCKET_NAME
    socket_path = Path(os.path.abspath(socket_path.expanduser()))
    debug = bool(ctx.meta.get("sdcli.debug"))
    if detach:
        argv = [sys.executable, "-m", "sdcli", *(["--debug"] if debug else []), "serve", "--quiet"]
        argv += ["--socket", str(socket_path), "--keep-alive", keep_alive]
        argv += ["--max-memory", max_memory] if max_memory else []
        argv += ["--listen", listen] if listen else []
        argv += ["--model", api_model.model, "--device", device, "--dtype", dtype]
        log = socket_path.with_suffix(".log")
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as handle:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=handle, start_new_session=True
            )
        if not wait_for(socket_path, process, START_TIMEOUT):
            raise UsageError(f"the worker did not start; see {log}")
        out.result(str(socket_path))
        return
    from sdcli.worker import server

    def ready() -> None:
        where = f"{socket_path}" + (f" and {address[0]}:{address[1]}" if address else "")
        out.info(f"sdcli worker {os.getpid()} listening on {where}")

    server.serve(
        socket_path,
        keep_alive=seconds,
        max_bytes=max_bytes,
        listen=address,
        model=api_model,
        token=token,
        debug=debug,
        ready=ready,
    )
