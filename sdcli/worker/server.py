"""The warm worker behind `sdcli serve`: models stay loaded between requests, one run at a time.

An ASGI app (starlette) served by uvicorn on a Unix socket that only this user can open (mode 0600, in a
0700 folder). Each run is the same `jobs.run` loop a cold `sdcli generate` runs, in a thread, under one
lock: two clients are queued, never interleaved on a pipeline. Events stream back as NDJSON; a client that
goes away (Ctrl-C) cancels its run before the next denoising step. starlette and uvicorn are imported
only when the worker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdcli import __version__
from sdcli.errors import ExitCode, SdcliError, UsageError, first_line, out_of_memory
from sdcli.worker import protocol
from sdcli.worker.protocol import BadRequest

if TYPE_CHECKING:
    from sdcli.core.requests import ModelRequest
    from sdcli.generation.jobs import Job
    from sdcli.model.pipelines import LoadedModel


class Cancelled(Exception):
    """The client went away: stop before the next denoising step."""


@dataclass
class Entry:
    model: LoadedModel
    size: int
    used: float


def model_bytes(model: LoadedModel) -> int:
    total = 0
    for component in getattr(model.pipe, "components", {}).values():
        parameters = getattr(component, "parameters", None)
        if callable(parameters):
            total += sum(p.numel() * p.element_size() for p in parameters())
    return total


class ModelCache:
    """Loaded models by their full request, least recently used first out when they need more than
    `max_bytes` together (the newest always stays), and each dropped after `keep_alive` idle seconds
    (negative: kept until the worker stops)."""

    def __init__(self, max_bytes: int | None = None, keep_alive: float = 300.0) -> None:
        self.max_bytes, self.keep_alive = max_bytes, keep_alive
        self.entries: OrderedDict[str, Entry] = OrderedDict()

    @staticmethod
    def key(request: ModelRequest) -> str:
        return json.dumps(protocol.model_to_json(request), sort_keys=True, default=str)

    def get(self, request: ModelRequest) -> LoadedModel:
        from sdcli.model import pipelines

        key = self.key(request)
        entry = self.entries.get(key)
        if entry is None:
            model = pipelines.load_model(request)
            entry = Entry(model, model_bytes(model), time.monotonic())
            self.entries[key] = entry
            self.evict()
        self.entries.move_to_end(key)
        entry.used = time.monotonic()
        return entry.model

    def evict(self) -> None:
        if self.max_bytes is None:
            return
        while len(self.entries) > 1 and sum(e.size for e in self.entries.values()) > self.max_bytes:
            self.entries.popitem(last=False)
        gc.collect()

    def expire(self, now: float | None = None) -> int:
        if self.keep_alive < 0:
            return 0
        now = time.monotonic() if now is None else now
        idle = [key for key, entry in self.entries.items() if now - entry.used >= self.keep_alive]
        for key in idle:
            del self.entries[key]
        if idle:
            gc.collect()
        return len(idle)


@dataclass(frozen=True)
class RunRequest:
    model: ModelRequest
    task: str | None
    jobs: list[Job]
    root: Path
    overwrite: bool
    explicit: bool
    with_metadata: bool
    keep_filtered: bool
    offline: bool  # the client's --offline (or HF_HUB_OFFLINE=1): a model load must not touch the network


MAX_CONNECTIONS = 64
# What odd JSON can still raise past the checks (nesting too deep, numbers too large): a 400, never a 500.
MALFORMED = (RecursionError, ValueError, TypeError, OverflowError)
RUN_FLAGS = ("overwrite", "explicit", "with_metadata", "keep_filtered", "offline")


def parse_run(body: bytes) -> RunRequest:
    """A run request, checked before anything runs: every field's type, every limit, every path. Only
    Unix-socket clients send them (the same user, who may name input images and output folders)."""
    from sdcli.generation.jobs import Job
    from sdcli.worker import job_inputs

    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request is not JSON: {first_line(exc)}") from None
    data = protocol.as_object(data, "the request")
    known = {"protocol", "version", "model", "task", "root", "jobs", *RUN_FLAGS}
    protocol.no_unknown(data, known, "the request")
    if data.get("protocol") != protocol.PROTOCOL:
        raise BadRequest(f"protocol {data.get('protocol')!r} is not {protocol.PROTOCOL}")
    if data.get("version") != __version__:
        raise BadRequest(
            f"the client is sdcli {data.get('version')}, this worker sdcli {__version__}: restart the worker"
        )
    flags = {}
    for name in RUN_FLAGS:
        if not isinstance(data.get(name), bool):
            raise BadRequest(f"{name} must be true or false")
        flags[name] = data[name]
    model = protocol.model_from_json(data.get("model"))
    task = data.get("task")
    if task is not None and task not in job_inputs.TASKS:
        raise BadRequest(f"task {task!r} is not one of {', '.join(job_inputs.TASKS)}")
    root = protocol.check_root(data.get("root"))
    items = data.get("jobs")
    if not isinstance(items, list) or not 0 < len(items) <= protocol.MAX_JOBS:
        raise BadRequest(f"jobs must be a list of 1 to {protocol.MAX_JOBS} jobs")
    jobs, images = [], 0
    for item in items:
        item = protocol.as_object(item, "a job")
        protocol.no_unknown(item, {"request", "paths", "line", "inputs"}, "a job")
        request = protocol.generation_from_json(item.get("request"))
        images += request.count
        if images > protocol.MAX_IMAGES:
            raise BadRequest(f"at most {protocol.MAX_IMAGES} images per request")
        paths = item.get("paths")
        if not isinstance(paths, list) or len(paths) != request.count:
            raise BadRequest("each job needs one path per image")
        line = item.get("line", 0)
        if not isinstance(line, int) or isinstance(line, bool):
            raise BadRequest("a job's line must be a number")
        read_inputs = None
        if "inputs" in item:
            read_inputs = job_inputs.reader(task, item["inputs"])
        elif task is not None:
            raise BadRequest(f"a {task} job needs its inputs")
        targets = [protocol.safe_target(root, p) for p in paths]
        jobs.append(Job(request, targets, line, read_inputs=read_inputs))
    return RunRequest(model, task, jobs, root, **flags)


def error_event(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, SdcliError):
        return {"event": "error", "exit": int(exc.exit_code), "message": exc.message, "hint": exc.hint}
    if (memory := out_of_memory(exc)) is not None:
        return {
            "event": "error",
            "exit": int(memory.exit_code),
            "message": memory.message,
            "hint": memory.hint,
        }
    return {
        "event": "error",
        "exit": int(ExitCode.FAILURE),
        "message": f"unexpected failure: {type(exc).__name__}: {first_line(exc)}",
        "hint": "the worker's log (sdcli serve --debug) has the details",
    }


class Worker:
    def __init__(self, cache: ModelCache, *, debug: bool = False, model: ModelRequest | None = None) -> None:
        self.cache = cache
        self.model = model  # what the A1111 and OpenAI APIs run (`sdcli serve -m`)
        self.lock = threading.Lock()  # one run at a time: requests queue here
        self.debug = debug

    def load(self, request: RunRequest) -> LoadedModel:
        """The request's model; loaded offline for an offline client (runs hold the lock, so switching
        huggingface_hub off and back on affects no other run)."""
        from sdcli.hub.settings import is_offline, set_offline

        if not request.offline or is_offline():
            return self.cache.get(request.model)
        set_offline(True)
        try:
            return self.cache.get(request.model)
        finally:
            set_offline(False)

    def run(self, request: RunRequest, emit: Any, cancelled: threading.Event) -> None:
        """One client's run, in a worker thread; `emit(event)` sends an event to that client."""
        from sdcli.generation import jobs
        from sdcli.images import outputs

        with self.lock:
            try:
                if cancelled.is_set():
                    return
                emit({"event": "loading"})
                model = self.load(request)
                if request.task is not None:
                    from sdcli.model import pipelines

                    model = pipelines.for_task(model, request.task)
                emit({"event": "loaded", "notes": list(model.notes)})

                def on_step(done: int, of: int) -> None:
                    if cancelled.is_set():
                        raise Cancelled
                    emit({"event": "step", "done": done, "of": of})

                plan = outputs.OutputPlan(request.root, "", request.explicit, request.overwrite)
                real_root = request.root.resolve()
                for number, job in enumerate(request.jobs):
                    for result in jobs.run(
                        model,
                        [job],
                        plan,
                        with_metadata=request.with_metadata,
                        keep_filtered=request.keep_filtered,
                        on_step=on_step,
                    ):
                        path = result.path.relative_to(real_root).as_posix() if result.path else None
                        emit({
                            "event": "image", "job": number, "path": path, "seed": result.seed,
                            "index": result.index, "line": result.line, "seconds": result.seconds,
                            "record": result.record, "notes": list(result.notes), "error": result.error,
                        })  # fmt: skip
                        if cancelled.is_set():
                            return
                emit({"event": "done"})
            except Cancelled:
                return
            except Exception as exc:
                if self.debug:
                    import traceback

                    traceback.print_exc()
                emit(error_event(exc))


def build_app(worker: Worker, *, token: str | None = None) -> Any:
    """The ASGI app. With `token`, every request must carry `Authorization: Bearer TOKEN` (TCP listeners)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def refuse(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    async def health(request: Request) -> Response:
        return JSONResponse({"sdcli": __version__, "protocol": protocol.PROTOCOL, "pid": os.getpid()})

    async def run(request: Request) -> Response:
        if token is not None:  # a TCP client would name folders and files on this machine: not over TCP
            return refuse(403, "sdcli's own runs write files: Unix socket only; over TCP use the HTTP APIs")
        try:
            run_request = parse_run(await read_body(request))
        except TooLarge:
            return refuse(413, f"the request is over {protocol.MAX_BODY_BYTES} bytes")
        except UsageError as exc:
            return refuse(400, exc.message)
        except MALFORMED as exc:
            return refuse(400, f"malformed request: {type(exc).__name__}")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[bytes | None] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(event: dict[str, Any]) -> None:
            line = (json.dumps(event, ensure_ascii=False) + "\n").encode()
            loop.call_soon_threadsafe(events.put_nowait, line)

        def work() -> None:
            try:
                worker.run(run_request, emit, cancelled)
            finally:
                loop.call_soon_threadsafe(events.put_nowait, None)

        async def stream() -> AsyncIterator[bytes]:
            thread = threading.Thread(target=work, name="sdcli-run", daemon=True)
            thread.start()
            try:
                while (line := await events.get()) is not None:
                    yield line
            finally:
                cancelled.set()  # a client that left (or a finished run): nothing more to do for it

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    async def compat(request: Request, parse: Any, answer: Any, error: Any) -> Response:
        from sdcli.worker import http_apis

        try:
            body = await read_body(request)
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise BadRequest("the request is not JSON") from None
            generation, sampler, init = parse(data)  # init: img2img's input image, else None
            if worker.model is None:
                raise BadRequest("this worker has no model for this API (start it with sdcli serve -m MODEL)")
        except TooLarge:
            return JSONResponse(error(f"the request is over {protocol.MAX_BODY_BYTES} bytes"), 413)
        except UsageError as exc:
            return JSONResponse(error(exc.message), 400)
        except MALFORMED as exc:
            return JSONResponse(error(f"malformed request: {type(exc).__name__}"), 400)
        try:
            made = await asyncio.to_thread(
                http_apis.make, worker.lock, worker.cache.get, worker.model, generation, sampler, init
            )
        except Exception as exc:
            status, message = compat_failure(exc)
            return JSONResponse(error(message), status)
        return JSONResponse(answer(generation, made))

    async def txt2img(request: Request) -> Response:
        from sdcli.worker import http_apis

        return await compat(
            request,
            lambda data: (*http_apis.a1111_request(data), None),
            http_apis.a1111_response,
            lambda message: {"error": "BadRequest", "detail": message},
        )

    async def img2img(request: Request) -> Response:
        from sdcli.worker import http_apis

        return await compat(
            request,
            http_apis.a1111_img2img_request,
            http_apis.a1111_response,
            lambda message: {"error": "BadRequest", "detail": message},
        )

    async def generations(request: Request) -> Response:
        from sdcli.worker import http_apis

        return await compat(
            request,
            lambda data: (http_apis.openai_request(data), None, None),
            lambda _, made: http_apis.openai_response(made, int(time.time())),
            lambda message: {"error": {"message": message, "type": "invalid_request_error"}},
        )

    app = Starlette(
        routes=[
            Route(protocol.HEALTH_PATH, health, methods=["GET"]),
            Route(protocol.RUN_PATH, run, methods=["POST"]),
            Route("/sdapi/v1/txt2img", txt2img, methods=["POST"]),
            Route("/sdapi/v1/img2img", img2img, methods=["POST"]),
            Route("/v1/images/generations", generations, methods=["POST"]),
        ]
    )
    if token is None:
        return app
    return require_token(app, token)


class TooLarge(Exception):
    pass


async def read_body(request: Any) -> bytes:
    """The request body, refused (TooLarge) past MAX_BODY_BYTES whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > protocol.MAX_BODY_BYTES):
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > protocol.MAX_BODY_BYTES:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def compat_failure(exc: BaseException) -> tuple[int, str]:
    event = error_event(exc)
    status = 400 if event["exit"] == int(ExitCode.USAGE) else 503 if event["exit"] == 3 else 500
    return status, event["message"]


def require_token(app: Any, token: str) -> Any:
    """ASGI middleware: 401 unless `Authorization: Bearer <token>`, compared in constant time."""
    import hmac

    expected = f"Bearer {token}".encode()

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                from starlette.responses import JSONResponse

                await JSONResponse({"error": "a valid bearer token is required"}, status_code=401)(
                    scope, receive, send
                )
                return
        await app(scope, receive, send)

    return guarded


def bind_unix(path: Path) -> socket.socket:
    """A listening socket only this user can connect to. A live worker already on `path` is an error; a
    stale socket file of ours is replaced; anything else at `path` is left alone."""
    if path.exists() or path.is_symlink():
        info = path.lstat()
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
            raise UsageError(f"{path} exists and is not a socket of this user's")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
        else:
            raise UsageError(f"a worker already listens on {path}", hint="stop it first, or pick --socket")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is created 0600: no moment where others could connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.setblocking(False)
    return sock


def serve(
    socket_path: Path,
    *,
    keep_alive: float = 300.0,
    max_bytes: int | None = None,
    listen: tuple[str, int] | None = None,
    token: str | None = None,
    debug: bool = False,
    model: ModelRequest | None = None,
    ready: Any = None,
) -> None:
    """Run the worker until SIGINT/SIGTERM. `ready()` is called once the sockets accept connections."""
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise UsageError(
            "sdcli serve needs uvicorn and starlette", hint="pip install 'sdcli[server]'"
        ) from None

    if listen is not None and not token:
        raise UsageError("--listen needs a token", hint=f"set {protocol.ENV_TOKEN}")
    worker = Worker(ModelCache(max_bytes, keep_alive), debug=debug, model=model)
    unix = bind_unix(socket_path)
    tcp = bind_tcp(*listen) if listen is not None else None

    def config(app: Any) -> Any:
        return uvicorn.Config(
            app,
            http="h11",
            lifespan="off",
            access_log=False,
            log_level="info" if debug else "warning",
            h11_max_incomplete_event_size=64 * 1024,
            limit_concurrency=MAX_CONNECTIONS,  # more at once are answered 503, not given a thread each
            timeout_graceful_shutdown=5,
        )

    class Server(uvicorn.Server):
        # One handler for both listeners (below) instead of each server's own, which would also re-raise
        # SIGTERM at exit and kill the process before the socket is removed.
        def capture_signals(self) -> Any:
            return contextlib.nullcontext()

    servers = [(Server(config(build_app(worker))), unix)]
    if tcp is not None:
        servers.append((Server(config(build_app(worker, token=token))), tcp))

    def stop() -> None:
        for server, _ in servers:
            server.should_exit = True

    async def expire() -> None:
        period = min(max(keep_alive / 4, 0.2), 30.0) if keep_alive >= 0 else 30.0
        while True:
            await asyncio.sleep(period)
            if worker.lock.acquire(blocking=False):
                try:
                    worker.cache.expire()
                finally:
                    worker.lock.release()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
        reaper = asyncio.create_task(expire())
        while not all(server.started for server, _ in servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.02)
        if ready is not None:
            ready()
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        reaper.cancel()

    try:
        asyncio.run(main())
    finally:
        for _, sock in servers:
            sock.close()
        try:
            if stat.S_ISSOCK(socket_path.lstat().st_mode):
                socket_path.unlink()
        except OSError:
            pass
