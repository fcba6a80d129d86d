"""The `hub_server` fixture: a local Hub stand-in per test; nothing in the tests reaches huggingface.co.

A plugin module (registered in tests/conftest.py) rather than conftest code, so other test suites can
load it with `pytest_plugins` and conftest.py stays a one-liner.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_server import HubServer

# Variables through which a developer's own setup (real cache, real token, offline mode) would leak in.
_CLEARED_ENV = (
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN",
    "HUGGINGFACE_CO_STAGING",
)


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A started `HubServer` with HF_ENDPOINT pointing at it and a private, empty HF_HOME.

    huggingface_hub copies most variables into `huggingface_hub.constants` when it is first imported, so
    setting the environment per test is not enough for the library itself. sdcli reads HF_ENDPOINT, HF_HOME
    and HF_HUB_OFFLINE at call time and passes endpoint/cache_dir explicitly, so the environment is what the
    tests set. The constants patched below are the ones the library keeps reading directly (offline switch,
    timeouts, token file, chunk size); HF_HUB_CACHE is pointed at a trap folder so a call that forgets to pass
    `cache_dir` shows up as a test failure instead of writing into the developer's real cache.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent, close_session

    from sdcli.hub import settings

    home = tmp_path / "hf-home"
    trap = tmp_path / "constants-cache-trap"
    for name in _CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    server = HubServer().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "3")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "5")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(trap))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 3)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 5)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    # A 2 MB test file then streams in many chunks, as a multi-GB weight file does with the default 10 MB.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
    monkeypatch.setattr(settings, "_offline_flag", False)
    # huggingface_hub fetches an "agent harness" registry from the endpoint once per process; pre-empt it so
    # request logs hold only what sdcli asked for.
    monkeypatch.setattr(_detect_agent, "_registry", {"standardEnvVars": [], "harnesses": {}}, raising=False)
    try:
        yield server
    finally:
        close_session()  # pooled keep-alive connections point at this server's port
        server.stop()
    assert not trap.exists(), "some code wrote to huggingface_hub's import-time cache path, not HF_HOME"
