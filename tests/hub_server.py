"""A local stand-in for the Hugging Face Hub, good enough for the real `huggingface_hub` client.

It serves model repos from local folders through the endpoints that `snapshot_download`, `hf_hub_download`,
`HfApi.model_info`, `list_repo_tree` and `get_paths_info` call, with the headers the client reads
(`X-Repo-Commit`, `ETag`, `X-Linked-Etag`, `X-Linked-Size`, `Content-Range`, `X-Error-Code`, `Location`).
Tests point `HF_ENDPOINT` at it; nothing here talks to the real Hub.

Fidelity notes, taken from how the Hub answers and from the client code (huggingface_hub 2.x):
- LFS-like files (weights) carry ETag = sha256 of the content plus `X-Linked-Etag`/`X-Linked-Size`;
  small files carry the git blob sha1. The client names cache blobs after that ETag.
- Gated repos list their files to anyone but refuse file downloads (401/403 `GatedRepo`) without the right
  token; private repos answer 401 `RepoNotFound` everywhere, as the Hub does, so they do not leak.
- With `cdn_redirects=True`, LFS downloads answer 302 to a "CDN" on another origin (`localhost` instead of
  `127.0.0.1`), so the client must drop the Authorization header on the way, as with the real CDN.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tests.hub_repos import (
    HubError,
    Repo,
    RepoFileEntry,
    Snapshot,
    commit_sha,
    model_info,
    paths_info,
    read_folder,
    tree_listing,
)

_CHUNK = 64 * 1024
_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_API_RE = re.compile(rf"^/api/models/{_REPO}(?:/(?P<kind>revision|tree|paths-info)/(?P<rest>.+))?$")
_RESOLVE_RE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN_RE = re.compile(r"^/cdn/(?P<sha>[0-9a-f]{64})$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]

    def __iter__(self):  # unpacks as (method, path, headers)
        return iter((self.method, self.path, self.headers))


class HubServer:
    """Threaded HTTP server on 127.0.0.1 (port 0). Use `start()`/`stop()` or as a context manager."""

    def __init__(self, *, cdn_redirects: bool = False) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[LoggedRequest] = []
        self.token: str | None = None
        self.cdn_redirects = cdn_redirects
        self.chunk_delay = 0.0  # seconds slept between 64 KiB body chunks, to make transfers overlap
        self._drops: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- setup -----------------------------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        folder: Path,
        revision: str = "main",
        *,
        gated: bool = False,
        private: bool = False,
    ) -> str:
        """Serve `folder` as `repo_id` at `revision`; returns the commit sha it is served under."""
        files = read_folder(Path(folder))
        repo = self.repos.setdefault(repo_id, Repo(repo_id))
        repo.gated, repo.private = gated, private
        sha = commit_sha(repo_id, revision, files)
        repo.revisions[revision] = Snapshot(sha, files)
        return sha

    def require_token(self, token: str) -> None:
        """Gated and private repos answer only to `Authorization: Bearer <token>`."""
        self.token = token

    def drop_after_bytes(self, path: str, n: int, times: int = 1) -> None:
        """The next `times` GETs of repo file `path` send the headers and `n` body bytes, then hang up."""
        with self._lock:
            self._drops.setdefault(path, []).extend([n] * times)

    def _take_drop(self, path: str) -> int | None:
        with self._lock:
            pending = self._drops.get(path)
            return pending.pop(0) if pending else None

    def log(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(LoggedRequest(method, path, headers))

    def requests_to(self, fragment: str) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if fragment in r.path]

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubServer:
        handler = type("BoundHubHandler", (HubHandler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        httpd = self._httpd
        # A short poll interval: stop() waits for the serve loop to notice, once per test.
        self._thread = threading.Thread(
            target=lambda: httpd.serve_forever(0.02), name="hub-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- access ----------------------------------------------------------------------------------
    def authorized(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return False
        return self.token is None or auth[len("Bearer ") :] == self.token

    def find_blob(self, sha256: str) -> RepoFileEntry | None:
        for repo in self.repos.values():
            for snap in repo.revisions.values():
                for entry in snap.files.values():
                    if entry.lfs and entry.sha256 == sha256:
                        return entry
        return None


class HubHandler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx pools connections
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    timeout = 30

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence stderr access log
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --- routing ---------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.hub.log(method, self.path, headers)
        body = self._read_body(headers)
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if m := _CDN_RE.match(url.path):
                self._serve_cdn(method, m["sha"], headers)
            elif m := _API_RE.match(url.path):
                self._api(method, m["repo"], m["kind"], m["rest"], query, body, headers)
            elif m := _RESOLVE_RE.match(url.path):
                self._resolve(method, m["repo"], unquote(m["rev"]), unquote(m["path"]), headers)
            else:
                raise HubError(404, None, f"no route for {url.path}")
        except HubError as err:
            self._send_error(method, err)

    def _read_body(self, headers: dict[str, str]) -> bytes:
        length = int(headers.get("content-length", "0") or 0)
        return self.rfile.read(length) if length else b""

    def _repo(self, repo_id: str, headers: dict[str, str]) -> Repo:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            raise HubError(404, "RepoNotFound", "Repository not found")
        if repo.private and not self.hub.authorized(headers):
            raise HubError(401, "RepoNotFound", "Repository not found")
        return repo

    def _snapshot(self, repo: Repo, revision: str) -> Snapshot:
        snap = repo.snapshot(revision)
        if snap is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return snap

    def _api(
        self,
        method: str,
        repo_id: str,
        kind: str | None,
        rest: str | None,
        query: dict[str, str],
        body: bytes,
        headers: dict[str, str],
    ) -> None:
        repo = self._repo(repo_id, headers)
        if kind is None or kind == "revision":
            if method != "GET":
                raise HubError(405, None, "method not allowed")
            snap = self._snapshot(repo, unquote(rest or "main"))
            blobs = query.get("blobs", "").lower() == "true"
            return self._send_json(method, model_info(repo, snap, blobs=blobs))
        rev_raw, _, path_raw = (rest or "").partition("/")
        snap = self._snapshot(repo, unquote(rev_raw))
        if kind == "tree" and method == "GET":
            recursive = query.get("recursive", "").lower() == "true"
            return self._send_json(method, tree_listing(snap, unquote(path_raw).strip("/"), recursive))
        if kind == "paths-info" and method == "POST":
            form = parse_qs(body.decode())
            return self._send_json(method, paths_info(snap, form.get("paths", [])))
        raise HubError(405, None, "method not allowed")

    # --- file downloads --------------------------------------------------------------------------
    def _resolve(self, method: str, repo_id: str, revision: str, path: str, headers: dict[str, str]) -> None:
        repo = self._repo(repo_id, headers)
        snap = self._snapshot(repo, revision)
        entry = snap.files.get(path)
        if entry is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {revision}", commit=snap.commit)
        if repo.gated and not self.hub.authorized(headers):
            # 401 without a token; 403 with a token whose user has not accepted the licence
            status = 403 if "authorization" in headers else 401
            raise HubError(
                status, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access."
            )
        meta = {"X-Repo-Commit": snap.commit, "ETag": f'"{entry.etag}"'}
        if entry.lfs:
            meta |= {"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)}
            if self.hub.cdn_redirects:
                location = f"http://localhost:{self.hub.port}/cdn/{entry.sha256}"
                return self._send_redirect(location, meta)
        self._send_file(method, entry, meta, headers)

    def _serve_cdn(self, method: str, sha256: str, headers: dict[str, str]) -> None:
        entry = self.hub.find_blob(sha256)
        if entry is None:
            raise HubError(404, None, "no such blob")
        self._send_file(method, entry, {"ETag": f'"{sha256}"'}, headers)

    def _send_file(
        self, method: str, entry: RepoFileEntry, meta: dict[str, str], headers: dict[str, str]
    ) -> None:
        start, end = parse_range(headers.get("range"), entry.size)
        partial = headers.get("range") is not None
        self.send_response(206 if partial else 200)
        for key, value in meta.items():
            self.send_header(key, value)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{entry.size}")
        self.end_headers()
        if method == "HEAD":
            return
        drop = self.hub._take_drop(entry.path)
        self._write_body(entry.data[start:end], drop)

    def _write_body(self, data: bytes, drop: int | None) -> None:
        limit = len(data) if drop is None else min(drop, len(data))
        for offset in range(0, limit, _CHUNK):
            self.wfile.write(data[offset : min(offset + _CHUNK, limit)])
            if self.hub.chunk_delay:
                time.sleep(self.hub.chunk_delay)
        self.wfile.flush()
        if drop is not None:
            # The fault: the client was promised Content-Length bytes and gets a closed socket instead.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    # --- responses -------------------------------------------------------------------------------
    def _send_json(self, method: str, payload: object, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def _send_redirect(self, location: str, meta: dict[str, str]) -> None:
        self.send_response(302)
        for key, value in meta.items():
            self.send_header(key, value)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_error(self, method: str, err: HubError) -> None:
        data = json.dumps({"error": err.message}).encode()
        self.send_response(err.status)
        if err.code:
            self.send_header("X-Error-Code", err.code)
        self.send_header("X-Error-Message", err.message)
        if err.commit:
            self.send_header("X-Repo-Commit", err.commit)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)


def parse_range(header: str | None, size: int) -> tuple[int, int]:
    """(start, end-exclusive) of a single `bytes=` range; the whole file when there is none."""
    if header is None:
        return 0, size
    m = _RANGE_RE.match(header.strip())
    if m is None or (not m[1] and not m[2]):
        raise HubError(416, None, f"bad range {header}")
    if not m[1]:  # suffix range: the last N bytes
        return max(size - int(m[2]), 0), size
    start, end = int(m[1]), (int(m[2]) + 1 if m[2] else size)
    if start >= size:
        raise HubError(416, None, f"range {header} outside 0-{size}")
    return start, min(end, size)
