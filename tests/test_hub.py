"""sdcli.hub and `sdcli download` through the real huggingface_hub client against a local Hub stand-in."""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from sdcli.commands.console import Output
from sdcli.commands.download import _fetch
from sdcli.diagnostics import environment
from sdcli.errors import ModelUnavailable, OutputError
from sdcli.hub import fetch
from sdcli.hub.cache import hub_cache_dir, resolve_cached
from sdcli.hub.errors import hub_errors
from sdcli.hub.selection import select_files, variant_of
from tests.hub_repos import BIG_FILE, make_diffusers_repo, make_plain_repo
from tests.hub_server import HubServer

REPO = "acme/tiny-sd"
SECRET = "hf_fakeSECRET123"
SKIPPED_SUFFIXES = (".bin", ".onnx", ".msgpack", ".ckpt")


# --- helpers ------------------------------------------------------------------------------------
def cli(*args: str) -> Any:
    """`sdcli download ARGS...` in-process, through the real app and its error boundary."""
    from sdcli.cli import app

    return CliRunner().invoke(app, ["download", *args])


def files_of(folder: Path) -> dict[str, bytes]:
    skip = (".cache/",)
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(skip)
    }


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".incomplete")]


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_diffusers_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture
def served(hub_server: HubServer, source: Path) -> str:
    """REPO served from `source`; returns its commit sha."""
    return hub_server.add_repo(REPO, source)


def repo_files(folder: Path) -> list[str]:
    return sorted(files_of(folder))


# --- file selection (pure) ----------------------------------------------------------------------
def test_default_selection_is_safetensors_of_listed_components(source: Path) -> None:
    index = json.loads((source / "model_index.json").read_text())
    chosen = select_files(repo_files(source), index)
    assert "model_index.json" in chosen
    assert {"unet/config.json", "tokenizer/vocab.json", "tokenizer/merges.txt"} <= set(chosen)
    assert {"scheduler/scheduler_config.json", "tokenizer/special_tokens_map.json"} <= set(chosen)
    assert "unet/diffusion_pytorch_model.safetensors" in chosen
    assert "text_encoder/model.safetensors" in chosen
    assert not [f for f in chosen if f.endswith(SKIPPED_SUFFIXES)]
    assert not [f for f in chosen if ".fp16." in f]
    assert not [f for f in chosen if f.startswith("stray/") or "/" not in f and f != "model_index.json"]


def test_fp16_variant_replaces_plain_weights(source: Path) -> None:
    index = json.loads((source / "model_index.json").read_text())
    chosen = select_files(repo_files(source), index, variant="fp16")
    weights = [f for f in chosen if f.endswith(".safetensors")]
    assert weights == [
        "text_encoder/model.fp16.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]
    assert "unet/config.json" in chosen


def test_variant_falls_back_per_weight_and_handles_shards() -> None:
    files = [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors.index.json",
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
        "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "text_encoder/model.safetensors",  # no fp16 copy: the plain one is taken
        "text_encoder/pytorch_model.bin.index.json",
    ]
    index = {"unet": ["diffusers", "UNet2DConditionModel"], "text_encoder": ["transformers", "CLIPTextModel"]}
    fp16 = select_files(files, index, variant="fp16")
    assert fp16 == [
        "model_index.json",
        "text_encoder/model.safetensors",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
    ]
    plain = select_files(files, index)
    assert "unet/diffusion_pytorch_model.safetensors.index.json" in plain
    assert not [f for f in plain if "fp16" in f or ".bin" in f]


@pytest.mark.parametrize(
    ("name", "variant"),
    [
        ("diffusion_pytorch_model.fp16.safetensors", "fp16"),
        ("diffusion_pytorch_model-00001-of-00002.fp16.safetensors", "fp16"),
        ("model.bf16-00001-of-00003.safetensors", "bf16"),
        ("diffusion_pytorch_model.safetensors.index.fp16.json", "fp16"),
        ("diffusion_pytorch_model.non_ema.safetensors", "non_ema"),
        ("diffusion_pytorch_model.safetensors", None),
        ("diffusion_pytorch_model.safetensors.index.json", None),
        ("sd_xl_base_1.0.safetensors", None),
    ],
)
def test_variant_of(name: str, variant: str | None) -> None:
    assert variant_of(name) == variant


def test_include_exclude_all_and_config_only(source: Path) -> None:
    files = repo_files(source)
    index = json.loads((source / "model_index.json").read_text())
    chosen = select_files(files, index, include=["*.onnx", "README.md"], exclude=["vae/"])
    assert "unet/model.onnx" in chosen and "text_encoder/model.onnx" in chosen and "README.md" in chosen
    assert not [f for f in chosen if f.startswith("vae/")]
    assert select_files(files, index, everything=True) == files
    configs = select_files(files, index, config_only=True)
    assert "model_index.json" in configs and "tokenizer/merges.txt" in configs
    assert not [f for f in configs if not f.endswith((".json", ".txt"))]
    assert "stray/diffusion_pytorch_model.safetensors" not in select_files(files, index, exclude=["*.bin"])


def test_plain_repo_takes_top_level_safetensors_and_configs(tmp_path: Path) -> None:
    files = repo_files(make_plain_repo(tmp_path))
    assert select_files(files, None) == ["config.json", "pytorch_lora_weights.safetensors"]


# --- the fixture speaks the Hub's protocol ------------------------------------------------------
def test_fixture_answers_the_real_client(hub_server: HubServer, source: Path, served: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_server.url)
    info = api.model_info(REPO, files_metadata=True)
    assert info.sha == served and info.id == REPO
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    assert sizes[BIG_FILE] == (source / BIG_FILE).stat().st_size
    assert sorted(api.list_repo_files(REPO)) == repo_files(source)
    tree = list(api.list_repo_tree(REPO, path_in_repo="unet"))
    assert {e.path for e in tree} >= {"unet/config.json", BIG_FILE}
    paths = api.get_paths_info(REPO, ["model_index.json", "unet", "nope.txt"], revision=served)
    assert [p.path for p in paths] == ["model_index.json", "unet"]


# --- downloads ----------------------------------------------------------------------------------
def test_download_to_cache_then_found_offline_without_requests(
    hub_server: HubServer, source: Path, served: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = cli(REPO)
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path == hub_cache_dir() / "models--acme--tiny-sd" / "snapshots" / served
    got = files_of(path)
    assert set(got) == set(
        select_files(repo_files(source), json.loads((source / "model_index.json").read_text()))
    )
    assert got and all(got[name] == (source / name).read_bytes() for name in got)

    hub_server.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_cached(REPO) == path
    assert fetch.plan_download(REPO).cached
    again = cli(REPO)
    assert again.exit_code == 0, again.stderr
    assert Path(again.stdout.strip()) == path
    copy = cli(REPO, "--to", str(tmp_path / "copy"))  # offline --to copies out of the cache
    assert copy.exit_code == 0, copy.stderr
    assert files_of(tmp_path / "copy") == got
    assert not [p for p in (tmp_path / "copy").rglob("*") if p.is_symlink()]
    assert hub_server.requests == []


def test_dry_run_lists_served_sizes_and_writes_nothing(
    hub_server: HubServer, source: Path, served: str
) -> None:
    result = cli(REPO, "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["commit"] == served and plan["path"] is None
    assert plan["files"] and all(f["size"] == (source / f["path"]).stat().st_size for f in plan["files"])
    assert plan["bytes"] == sum(f["size"] for f in plan["files"])
    assert not (hub_cache_dir() / "models--acme--tiny-sd").exists()
    everything = json.loads(cli(REPO, "--dry-run", "--json", "--all").stdout)
    assert [f["path"] for f in everything["files"]] == repo_files(source)
    configs = json.loads(cli(REPO, "--dry-run", "--json", "--config-only").stdout)
    assert configs["files"] and all(f["path"].endswith((".json", ".txt")) for f in configs["files"])
    text = cli(f"{hub_server.url}/{REPO}/tree/main", "--dry-run", "--variant", "fp16")  # a pasted model URL
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in text.stdout and "total" in text.stdout
    assert not hub_server.requests_to("/resolve/" + served + "/unet/")


def test_download_to_plain_folder(hub_server: HubServer, source: Path, served: str, tmp_path: Path) -> None:
    target = tmp_path / "out" / "sd"
    result = cli(REPO, "--to", str(target), "--variant", "fp16", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert Path(record["path"]) == target.resolve()
    got = files_of(target)
    assert set(got) == {f["path"] for f in record["files"]}
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in got
    assert not [p for p in target.rglob("*") if p.is_symlink()]
    assert got and all(got[name] == (source / name).read_bytes() for name in got)
    assert not (hub_cache_dir() / "models--acme--tiny-sd" / "snapshots").exists()


def test_named_files_form(hub_server: HubServer, source: Path, served: str) -> None:
    result = cli(REPO, "v1-5-pruned.safetensors")
    assert result.exit_code == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.name == "v1-5-pruned.safetensors"
    assert path.read_bytes() == (source / "v1-5-pruned.safetensors").read_bytes()
    missing = cli(REPO, "nope.safetensors")
    assert missing.exit_code == 3 and "nope.safetensors" in missing.stderr
    mixed = cli(REPO, "v1-5-pruned.safetensors", "--all")
    assert mixed.exit_code == 2


def test_revision_branch_and_missing_revision(hub_server: HubServer, source: Path, tmp_path: Path) -> None:
    hub_server.add_repo(REPO, source)
    v2 = hub_server.add_repo(REPO, make_plain_repo(tmp_path / "v2"), revision="v2")
    plan = fetch.plan_download(REPO, revision="v2")
    assert plan.commit == v2 and not plan.pipeline
    assert [p for p, _ in plan.files] == ["config.json", "pytorch_lora_weights.safetensors"]
    noted = cli(REPO, "--revision", "v2", "--dry-run")
    assert "no model_index.json" in noted.stderr
    result = cli(REPO, "--revision", "nope")
    assert result.exit_code == 3
    assert "revision 'nope'" in result.stderr and REPO in result.stderr


def test_repo_without_safetensors_has_nothing_to_download(hub_server: HubServer, tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "model.ckpt").write_bytes(b"x" * 10)
    hub_server.add_repo("acme/ckpt-only", tmp_path / "r")
    result = cli("acme/ckpt-only")
    assert result.exit_code == 3 and "nothing to download" in result.stderr


# --- failures -----------------------------------------------------------------------------------
def test_repo_not_found(hub_server: HubServer) -> None:
    result = cli("acme/does-not-exist")
    assert result.exit_code == 3
    assert "model 'acme/does-not-exist' was not found on the Hub" in result.stderr
    assert "HF_TOKEN" in result.stderr


def test_bad_model_id_and_contradicting_options_are_usage_errors(hub_server: HubServer) -> None:
    bad = cli("not/a/valid id")
    assert bad.exit_code == 2 and "not a valid model id" in bad.stderr
    assert cli(REPO, "--all", "--config-only").exit_code == 2
    assert cli(REPO, "--variant", "fp16; rm").exit_code == 2
    assert hub_server.requests == []


def test_private_repo_without_token_reads_as_not_found(hub_server: HubServer, source: Path) -> None:
    hub_server.add_repo(REPO, source, private=True)
    result = cli(REPO)
    assert result.exit_code == 3 and "was not found" in result.stderr


def test_gated_without_token(hub_server: HubServer, source: Path) -> None:
    hub_server.add_repo(REPO, source, gated=True)
    hub_server.require_token(SECRET)
    result = cli(REPO)
    assert result.exit_code == 3
    assert "gated" in result.stderr and "licence" in result.stderr
    assert "HF_TOKEN" in result.stderr and "hf auth login" in result.stderr


def test_gated_with_token_sends_it_and_never_prints_it(
    hub_server: HubServer, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add_repo(REPO, source, gated=True)
    hub_server.require_token(SECRET)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = cli(REPO, "--json")
    assert result.exit_code == 0, result.stderr
    resolves = hub_server.requests_to("/resolve/")
    assert resolves and all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in resolves)
    assert SECRET not in result.stdout + result.stderr


def test_token_never_printed_even_when_quoted_in_an_error(
    hub_server: HubServer, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add_repo(REPO, source, gated=True)
    hub_server.require_token("hf_theRightOne456")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    refused = cli(REPO)  # a token the licence was not accepted for: 403 GatedRepo
    assert refused.exit_code == 3 and "gated" in refused.stderr
    echoed = cli(REPO, "--revision", SECRET)  # the message quotes the revision: it must not show the token
    assert echoed.exit_code == 3 and "revision '***'" in echoed.stderr
    for result in (refused, echoed):
        assert SECRET not in result.stdout + result.stderr


def test_cdn_redirect_drops_the_token(
    hub_server: HubServer, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.cdn_redirects = True
    hub_server.add_repo(REPO, source)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = fetch.download(fetch.plan_download(REPO))
    assert (result.path / BIG_FILE).read_bytes() == (source / BIG_FILE).read_bytes()
    cdn = hub_server.requests_to("/cdn/")
    assert cdn and not [r for r in cdn if "authorization" in r.headers]
    resolves = hub_server.requests_to("/resolve/")
    assert resolves and all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in resolves)


def test_unreachable_endpoint_fails_fast(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    result = cli(REPO)
    assert time.monotonic() - started < 5
    assert result.exit_code == 3
    assert "cannot reach the Hub" in result.stderr and "--offline" in result.stderr


def test_offline_with_uncached_repo(
    hub_server: HubServer, served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    expected = f"{REPO} is not in the local cache; run `sdcli download {REPO}` where there is network"
    started = time.monotonic()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from_env = cli(REPO)
    assert from_env.exit_code == 3 and expected in from_env.stderr
    monkeypatch.delenv("HF_HUB_OFFLINE")
    flagged = cli(REPO, "--offline")
    assert flagged.exit_code == 3 and expected in flagged.stderr
    assert time.monotonic() - started < 2
    assert hub_server.requests == []
    # --offline reaches the libraries too, so diffusers' from_pretrained stays off the network
    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True


def test_offline_cache_missing_the_asked_variant(hub_server: HubServer, served: str) -> None:
    assert cli(REPO).exit_code == 0
    hub_server.requests.clear()
    result = cli(REPO, "--offline", "--variant", "fp16")
    assert result.exit_code == 3 and "files missing" in result.stderr
    assert hub_server.requests == []


def test_unwritable_target(hub_server: HubServer, served: str, tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert cli(REPO, "--to", str(a_file)).exit_code == 6
    under_file = cli(REPO, "--to", str(a_file / "sub"))
    assert under_file.exit_code == 6 and "cannot write" in under_file.stderr


def test_unwritable_cache(
    hub_server: HubServer, served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file.txt").write_text("x")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "file.txt" / "hf"))
    result = cli(REPO)
    assert result.exit_code == 6
    assert "cannot write" in result.stderr and "HF_HOME" in result.stderr


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot create anything in: a chmod does not stop root, sysfs does."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        yield Path("/sys/sdcli-test")
        return
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    yield locked
    locked.chmod(0o700)


def test_read_only_target(hub_server: HubServer, served: str, unwritable: Path) -> None:
    result = cli(REPO, "--to", str(unwritable / "sd"))
    assert result.exit_code == 6, result.stderr
    assert "cannot write" in result.stderr


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_disk_errors_map_to_output_error(code: int, tmp_path: Path) -> None:
    with pytest.raises(OutputError) as caught, hub_errors(REPO, target=tmp_path):
        raise OSError(code, os.strerror(code))
    assert str(tmp_path) in caught.value.message


def test_socket_errors_map_to_unreachable() -> None:
    with pytest.raises(ModelUnavailable, match="cannot reach the Hub"), hub_errors(REPO):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")


# --- interruptions and concurrency --------------------------------------------------------------
def test_connection_dropped_mid_file_resumes_with_range(
    hub_server: HubServer, source: Path, served: str
) -> None:
    hub_server.drop_after_bytes(BIG_FILE, 700_000)
    result = fetch.download(fetch.plan_download(REPO))
    assert (result.path / BIG_FILE).read_bytes() == (source / BIG_FILE).read_bytes()
    ranges = [r.headers.get("range") for r in hub_server.requests_to(BIG_FILE) if r.method == "GET"]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1][len("bytes=") : -1]) > 0  # resumed where the transfer broke, not from zero
    assert not leftovers(hub_cache_dir())

    hub_server.requests.clear()
    fetch.download(fetch.plan_download(REPO))  # rerun: nothing fetched again
    assert not [r for r in hub_server.requests_to("/resolve/") if r.method == "GET"]


def test_progress_reports_bytes_up_to_the_total(hub_server: HubServer, served: str) -> None:
    plan = fetch.plan_download(REPO)
    seen: list[tuple[int, int]] = []
    fetch.download(plan, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 10  # the 2 MB file streams in 64 KiB chunks
    assert all(total == plan.total_bytes for _, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1][0] == plan.total_bytes


def test_interrupted_run_then_rerun_completes(hub_server: HubServer, source: Path, served: str) -> None:
    plan = fetch.plan_download(REPO)
    hub_server.chunk_delay = 0.002

    def interrupt(done: int, total: int) -> None:
        if done > 300_000:
            raise KeyboardInterrupt  # what Ctrl-C looks like inside the transfer

    with pytest.raises(KeyboardInterrupt):
        fetch.download(plan, progress=interrupt)
    snapshot = hub_cache_dir() / "models--acme--tiny-sd" / "snapshots" / served
    assert not (snapshot / BIG_FILE).exists()
    assert not leftovers(hub_cache_dir())

    hub_server.chunk_delay = 0.0
    result = fetch.download(plan)
    got = files_of(result.path)
    assert set(got) == {p for p, _ in plan.files}
    assert got and all(got[name] == (source / name).read_bytes() for name in got)


def test_two_concurrent_downloads_both_succeed(hub_server: HubServer, source: Path, served: str) -> None:
    hub_server.chunk_delay = 0.002  # both transfers of the big file overlap
    plan = fetch.plan_download(REPO)
    results: list[fetch.DownloadResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(fetch.download(plan))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 2
    assert results[0].path == results[1].path
    assert (results[0].path / BIG_FILE).read_bytes() == (source / BIG_FILE).read_bytes()
    assert not leftovers(hub_cache_dir())


@pytest.mark.slow
def test_two_concurrent_processes_both_succeed(hub_server: HubServer, source: Path, served: str) -> None:
    hub_server.chunk_delay = 0.002
    code = f"from sdcli.hub import fetch; print(fetch.download(fetch.plan_download({REPO!r})).path)"
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    paths = {Path(out.decode().strip()) for out, _ in outputs}
    assert len(paths) == 1
    assert files_of(paths.pop())[BIG_FILE] == (source / BIG_FILE).read_bytes()
    assert not leftovers(hub_cache_dir())


def test_progress_bar_on_a_terminal(hub_server: HubServer, served: str) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    result = _fetch(fetch.plan_download(REPO), None, Output(console=console), show_bar=True)
    assert (result.path / BIG_FILE).is_file()
    assert REPO in out.getvalue() and "2.1" in out.getvalue()  # description and "2.1 MB" transferred


# --- the cache ----------------------------------------------------------------------------------
def test_list_cached_pipelines_and_ensure_local(hub_server: HubServer, source: Path, tmp_path: Path) -> None:
    sha = hub_server.add_repo(REPO, source)
    hub_server.add_repo("acme/lora", make_plain_repo(tmp_path / "lora"))
    assert environment.cached_pipelines().pipelines == ()
    folder, commit = fetch.ensure_local(REPO)
    assert commit == sha and (folder / "model_index.json").is_file()
    fetch.download(fetch.plan_download("acme/lora"))
    listed = environment.cached_pipelines().pipelines
    assert [m.repo_id for m in listed] == [REPO]
    assert [r.commit for r in listed[0].revisions] == [sha] and listed[0].size_bytes > 2_000_000

    hub_server.requests.clear()
    assert fetch.ensure_local(REPO) == (folder, sha)  # cached: no request at all
    assert hub_server.requests == []
    fp16_folder, _ = fetch.ensure_local(REPO, variant="fp16")  # not cached in that variant: fetched
    assert (fp16_folder / "unet/diffusion_pytorch_model.fp16.safetensors").is_file()
    assert hub_server.requests
