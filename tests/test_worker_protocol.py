"""The worker's pieces that need no process: where it listens, what it accepts, what it keeps loaded."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sdcli.commands import serve
from sdcli.core.requests import GenerationRequest, MemoryOptions, ModelRequest
from sdcli.core.specs import EmbeddingSpec, LoraSpec
from sdcli.errors import UsageError
from sdcli.worker import protocol, server
from sdcli.worker.protocol import BadRequest


def test_requests_survive_json() -> None:
    model = ModelRequest(
        model="some/model",
        memory=MemoryOptions(vae_tiling=True),
        loras=(LoraSpec("a.safetensors", 0.5),),
        embeddings=(EmbeddingSpec("e.pt", "tok"),),
        scheduler_state=("EulerDiscreteScheduler", {"beta_end": 0.012}),
        allow_pickle=True,
    ).validated()
    import json

    assert protocol.model_from_json(json.loads(json.dumps(protocol.model_to_json(model)))) == model
    request = GenerationRequest("a cat", steps=3, seed=9, count=2).validated()
    again = protocol.generation_from_json(json.loads(json.dumps(protocol.generation_to_json(request))))
    assert again == request


def test_runtime_folder_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    folder = protocol.runtime_folder(create=True)
    assert folder == tmp_path / "sdcli" and stat.S_IMODE(folder.stat().st_mode) == 0o700
    os.chmod(folder, 0o755)
    with pytest.raises(UsageError, match="not a private folder"):
        protocol.runtime_folder()


def test_safe_target_stays_in_the_root(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "up").symlink_to(tmp_path)
    (tmp_path / "out" / "link.png").symlink_to(tmp_path / "elsewhere.png")
    root = tmp_path / "out"
    assert protocol.safe_target(root, "a/b/c.png") == root / "a" / "b" / "c.png"
    for name in ("../x.png", "/x.png", "a/../../x.png", "up/x.png", "link.png", "x.jpg", "", "a\\b.png", 3):
        with pytest.raises(BadRequest):
            protocol.safe_target(root, name)


def test_bind_unix_is_0600_and_refuses_a_live_socket(tmp_path: Path) -> None:
    path = tmp_path / "w.sock"
    sock = server.bind_unix(path)
    try:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        with pytest.raises(UsageError, match="already listens"):
            server.bind_unix(path)
    finally:
        sock.close()
    server.bind_unix(path).close()  # a stale socket of ours is replaced
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a socket"):
        server.bind_unix(tmp_path / "file")


class FakeLoaded:
    def __init__(self, name: str) -> None:
        self.name = name
        self.pipe = None


def test_cache_keeps_the_newest_within_its_size_and_drops_idle_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sdcli.model import pipelines

    loads: list[str] = []

    def load(request: ModelRequest) -> FakeLoaded:
        loads.append(request.model)
        return FakeLoaded(request.model)

    monkeypatch.setattr(pipelines, "load_model", load)
    monkeypatch.setattr(server, "model_bytes", lambda model: 10)
    cache = server.ModelCache(max_bytes=25, keep_alive=60)
    a, b, c = (ModelRequest(model=name).validated() for name in "abc")
    cache.get(a), cache.get(b), cache.get(a), cache.get(c)  # b is least recently used: out
    assert loads == ["a", "b", "c"] and list(cache.entries) == [cache.key(a), cache.key(c)]
    cache.get(a)
    assert loads == ["a", "b", "c"]
    cache.entries[cache.key(c)].used, cache.entries[cache.key(a)].used = 0.0, 100.0
    assert cache.expire(now=130.0) == 1 and list(cache.entries) == [cache.key(a)]  # c idle 130 s, a 30 s
    assert cache.expire(now=160.0) == 1 and not cache.entries


@pytest.mark.parametrize(
    ("text", "seconds"), [("300", 300), ("90s", 90), ("5m", 300), ("1h", 3600), ("-1", -1), ("250ms", 0.25)]
)
def test_keep_alive_durations(text: str, seconds: float) -> None:
    assert serve.parse_duration(text) == seconds


def test_sizes_and_listen_addresses() -> None:
    assert serve.parse_size("8GB") == 8 * 10**9 and serve.parse_size("512mb") == 512 * 10**6
    assert serve.parse_listen("127.0.0.1:7860") == ("127.0.0.1", 7860)
    assert serve.parse_listen("[::1]:80") == ("::1", 80)
    for bad in ("7860", "host:", "host:99999"):
        with pytest.raises(UsageError):
            serve.parse_listen(bad)
    with pytest.raises(UsageError):
        serve.parse_duration("soon")
