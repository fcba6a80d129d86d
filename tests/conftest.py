"""Shared fixtures: tiny random-weight pipelines saved once per session, and an in-process CLI runner.

No test may reach the internet: the Hub endpoint points at a closed local port and the cache is private.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Set before anything imports huggingface_hub, which reads these once.
_HF_HOME = tempfile.mkdtemp(prefix="sdcli-test-hf-")
os.environ.update(
    HF_HOME=_HF_HOME,
    HF_ENDPOINT="http://127.0.0.1:9",
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_HUB_ETAG_TIMEOUT="2",
    HF_HUB_DOWNLOAD_TIMEOUT="5",
    NO_COLOR="1",
    SDCLI_CACHE_DIR=tempfile.mkdtemp(prefix="sdcli-test-cache-"),  # file hashes, never the user's cache
    SDCLI_WORKER="off",  # a worker the developer left running must not take the suite's runs
    # Tiny models gain nothing from a second thread, and threads fighting over 2 busy cores cost 10x.
    OMP_NUM_THREADS="1",
    # The suite is CPU-only on every torch build: pixel comparisons assume CPU kernels, and tests of a
    # missing GPU need one missing. GPU paths are checked by tests/gpu/gpu_check.sh on a real GPU.
    CUDA_VISIBLE_DEVICES="",
    HIP_VISIBLE_DEVICES="",
)
for name in ("SDCLI_MODEL", "SDCLI_DEVICE", "SDCLI_DTYPE", "SDCLI_OUTPUT", "HF_TOKEN", "HF_HUB_OFFLINE"):
    os.environ.pop(name, None)

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

pytest_plugins = (
    "tests.hub_fixtures",
    "tests.model_fixtures",
    "tests.family_fixtures",
    "tests.control_fixtures",
)


def _save_tiny(root: Path, family: str) -> Path:
    from sdcli.diagnostics.tiny import TinySpec, build_tiny_pipeline

    folder = root / f"tiny-{family}"
    build_tiny_pipeline(TinySpec(family)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("models"), "sd")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("models"), "sdxl")


@pytest.fixture(scope="session")
def tiny_inpaint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("models"), "sd-inpaint")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run `sdcli ARGS...` in-process from a fresh working folder; returns Click's Result
    (exit_code, stdout and stderr kept apart)."""
    from sdcli.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke
