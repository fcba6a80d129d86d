"""A Hub model downloaded once generates with no network: `--offline`, and a network that is down."""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image


def test_download_then_generate_offline_with_no_request(cli, hub_server, tiny_sd: Path) -> None:
    commit = hub_server.add_repo("org/tiny-sd", tiny_sd)
    result = cli("download", "org/tiny-sd")
    assert result.exit_code == 0, result.stderr
    assert (Path(result.stdout.strip()) / "model_index.json").is_file()

    before = len(hub_server.requests)
    result = cli("generate", "a cat", "-m", "org/tiny-sd", "--offline", "--steps", "1", "-o", "cat.png")
    assert result.exit_code == 0, result.stderr
    assert len(hub_server.requests) == before, "an --offline run made HTTP requests"
    with Image.open("cat.png") as im:
        record = json.loads(im.text["sdcli"])
    assert record["model"] == "org/tiny-sd" and record["commit"] == commit


def test_cached_model_works_when_the_network_is_down(cli, hub_server, tiny_sd: Path) -> None:
    hub_server.add_repo("org/tiny-sd", tiny_sd)
    assert cli("download", "org/tiny-sd").exit_code == 0
    hub_server.stop()
    began = time.perf_counter()
    result = cli("generate", "a cat", "-m", "org/tiny-sd", "--steps", "1", "-o", "cat.png")
    assert result.exit_code == 0, result.stderr
    assert time.perf_counter() - began < 60  # no retries against the dead endpoint


def test_generate_downloads_only_what_it_needs(cli, hub_server, tiny_sd: Path) -> None:
    hub_server.add_repo("org/tiny-sd", tiny_sd)
    result = cli("generate", "a cat", "-m", "org/tiny-sd", "--steps", "1", "-o", "cat.png")
    assert result.exit_code == 0, result.stderr
    fetched = {r.path.split("/resolve/", 1)[1].split("/", 1)[1] for r in hub_server.requests_to("/resolve/")}
    assert "model_index.json" in fetched and "unet/diffusion_pytorch_model.safetensors" in fetched
