"""`sdcli info`: the environment report, the cached-pipeline listing, and the end-to-end `--check`, on CPU."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

import pytest

from sdcli.diagnostics import check, environment
from sdcli.errors import CheckFailed
from sdcli.hub.cache import hub_cache_dir

README = Path(__file__).resolve().parents[1] / "README.md"
TOP_KEYS = {"sdcli", "python", "platform", "packages", "torch", "devices", "choice", "cache", "settings"}
TOP_KEYS |= {"check", "defaults"}
CHECK_KEYS = {"ok", "model", "pipeline", "device", "dtype", "width", "height", "steps", "stages", "error"}
CHECK_KEYS |= {"total_seconds", "failed_stage"}
TINY_STAGES = ["import", "build", "to-device", "denoise+decode", "verify"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run_json(cli, *args: str) -> tuple[int, dict, str]:
    result = cli("info", "--json", *args)
    return result.exit_code, json.loads(result.stdout), result.stderr


def hub_cache(root: Path, repo_id: str, files: Path | dict[str, bytes], commit: str = COMMIT) -> Path:
    """Lay a repo out the way huggingface_hub does: blobs by hash, snapshot symlinks, refs/main."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    contents = (
        {str(p.relative_to(files)): p.read_bytes() for p in files.rglob("*") if p.is_file()}
        if isinstance(files, Path)
        else files
    )
    for name, data in contents.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return repo


@pytest.fixture
def nan_decode(monkeypatch: pytest.MonkeyPatch):
    """Make every VAE decode return NaN (what an fp16 overflow looks like)."""
    from diffusers import AutoencoderKL

    original = AutoencoderKL.decode

    def decode(self, z, return_dict=True, generator=None):
        return (original(self, z, return_dict=False, generator=generator)[0] * float("nan"),)

    monkeypatch.setattr(AutoencoderKL, "decode", decode)


# --- the report ---


def test_report_versions_match_package_metadata() -> None:
    found = environment.package_versions()
    for name in environment.PACKAGES:
        assert found[name] == importlib_metadata.version(name)
    assert set(environment.PACKAGES) >= {"torch", "diffusers", "transformers", "accelerate", "pillow"}
    assert set(environment.PACKAGES) >= {"huggingface_hub", "safetensors"}
    for name in ("xformers", "peft", "compel"):
        try:
            assert found[name] == importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            assert found[name] is None


def test_json_has_the_documented_keys(cli) -> None:
    import torch

    code, data, stderr = run_json(cli)
    assert code == 0, stderr
    assert set(data) == TOP_KEYS and data["check"] is None
    assert data["sdcli"] == "0.1.0" and data["python"] == ".".join(map(str, sys.version_info[:3]))
    assert data["packages"]["diffusers"] == importlib_metadata.version("diffusers")
    assert data["torch"] == {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": data["torch"]["cudnn"],
        "rocm": getattr(torch.version, "hip", None),
    }
    check_cudnn(data["torch"]["cudnn"])
    assert len(data["devices"]["cuda"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert data["devices"]["mps"] is torch.backends.mps.is_available()
    assert data["devices"]["cpu_threads"] == torch.get_num_threads()
    assert set(data["cache"]) == {"path", "exists", "offline", "pipelines", "warnings"}
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## info") : readme.index("## Exit codes")]
    for key in [*TOP_KEYS, *CHECK_KEYS, *data["choice"], *data["torch"], *data["devices"], *data["cache"]]:
        assert f"`{key}`" in section, f"{key} is not documented in README's ## info"


def check_cudnn(reported: str | None) -> None:
    """What a CUDA build says of its cuDNN (None on CPU builds): 9.10.2 for torch's 91002."""
    import torch

    raw = torch.backends.cudnn.version() if torch.version.cuda else None
    if not raw:
        assert reported is None
        return
    assert reported is not None and re.fullmatch(r"\d+\.\d+\.\d+", reported), reported
    major, _, patch = reported.split(".")
    assert str(raw).startswith(major) and str(raw).endswith(f"{int(patch):02d}")


def test_auto_choice_on_a_machine_without_a_gpu_says_why() -> None:
    import torch

    choice = environment.choose("auto", "auto")
    assert (choice.device, choice.dtype, choice.error) == ("cpu", "fp32", None)
    gpu_build = torch.version.cuda or getattr(torch.version, "hip", None)
    expected = "torch sees no GPU" if gpu_build else "CPU-only build"
    assert expected in choice.reason and "fp32 on CPU" in choice.reason
    asked = environment.choose("cpu", "bf16")
    assert (asked.device, asked.dtype) == ("cpu", "bf16") and "--dtype bf16 was asked for" in asked.reason


def test_human_report_is_tables_on_stdout(cli) -> None:
    result = cli("info")
    assert result.exit_code == 0, result.stderr
    diffusers = importlib_metadata.version("diffusers")
    for text in ("diffusers", diffusers, "Devices", "Hugging Face cache", "cpu"):
        assert text in result.stdout
    assert "\x1b[" not in result.stdout  # NO_COLOR (set in conftest) and not a terminal
    assert result.stderr == ""


def test_settings_show_sdcli_variables_and_never_a_token(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDCLI_STEPS", "12")
    monkeypatch.setenv("SDCLI_HF_TOKEN", "hf_secretsecret")
    monkeypatch.setenv("HF_TOKEN", "hf_othersecret")
    result = cli("info", "--json")
    assert result.exit_code == 0, result.stderr
    settings = json.loads(result.stdout)["settings"]
    assert settings["SDCLI_STEPS"] == "12" and settings["SDCLI_HF_TOKEN"] == environment.HIDDEN
    human = cli("info")
    assert "SDCLI_STEPS" in human.stdout
    for out in (result.stdout, human.stdout, human.stderr):
        assert "secret" not in out


def test_unavailable_device_still_reports_then_exits_5(cli) -> None:
    code, data, stderr = run_json(cli, "--device", "cuda")
    assert code == 5
    assert data["choice"]["device"] is None and "CUDA is not available" in data["choice"]["error"]
    assert "error: --device cuda: CUDA is not available" in stderr


def test_info_reads_images_and_refuses_non_images(cli, tiny_sd: Path) -> None:
    assert (
        cli("generate", "a red boat", "-m", tiny_sd, "--steps", "1", "--seed", "5", "-o", "b.png").exit_code
        == 0
    )
    shown = cli("info", "b.png")
    assert shown.exit_code == 0 and "a red boat" in shown.stdout and "b.png (PNG, sdcli)" in shown.stdout
    data = json.loads(cli("info", "b.png", "--json").stdout)
    assert (data["file"], data["source"], data["prompt"]) == ("b.png", "sdcli", "a red boat")
    assert data["parameters"]["Seed"] == 5 and data["record"]["seed"] == 5
    Path("plain.png").write_bytes(b"\x89PNG not really")
    bad = cli("info", "plain.png")
    assert bad.exit_code == 2 and "plain.png" in bad.stderr and "Traceback" not in bad.stderr


def test_info_lists_schedulers(cli) -> None:
    listed = json.loads(cli("info", "--schedulers", "--json").stdout)["samplers"]
    assert any(row["name"] == "DPM++ 2M" and "Karras" in row["schedules"] for row in listed)
    assert "Euler a" in cli("info", "--schedulers").stdout


def test_info_shows_where_defaults_come_from(cli, tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "sdcli.toml"
    config.write_text("steps = 12\n[generate]\nguidance = 5\n")
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    monkeypatch.setenv("SDCLI_DTYPE", "fp32")
    defaults = json.loads(cli("info", "--json").stdout)["defaults"]
    assert defaults["generate"]["steps"] == {"value": 12, "source": str(config)}
    assert defaults["generate"]["guidance"] == {"value": 5, "source": str(config)}
    assert defaults["generate"]["dtype"] == {"value": "fp32", "source": "SDCLI_DTYPE"}


def test_model_without_check_is_a_usage_error(cli) -> None:
    model = cli("info", "-m", "x/y")
    assert model.exit_code == 2 and "--model is used only with --check" in model.stderr


# --- the Hub cache ---


def test_cache_dir_follows_the_environment_at_call_time(tmp_path: Path) -> None:
    assert hub_cache_dir({"HF_HUB_CACHE": str(tmp_path / "c")}) == tmp_path / "c"
    hf_home = {"HF_HOME": str(tmp_path / "h"), "XDG_CACHE_HOME": "/x"}
    assert hub_cache_dir(hf_home) == tmp_path / "h" / "hub"
    assert hub_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "huggingface" / "hub"
    assert hub_cache_dir({}) == Path.home() / ".cache" / "huggingface" / "hub"


def test_cached_pipelines_found_in_a_hub_cache(
    cli, tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "hf-home"
    cache = home / "hub"
    repo = hub_cache(cache, "org/tiny-sd", tiny_sd)
    hub_cache(cache, "org/a-text-model", {"config.json": b"{}"})  # no model_index.json: not a pipeline
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(home))

    found = environment.cached_pipelines()
    assert found.path == cache and found.exists
    assert [p.repo_id for p in found.pipelines] == ["org/tiny-sd"]
    tiny = found.pipelines[0]
    assert tiny.pipeline == "StableDiffusionPipeline" and tiny.path == repo
    assert tiny.revisions == (environment.CachedRevision(COMMIT, ("main",)),)
    expected = sum(p.stat().st_size for p in tiny_sd.rglob("*") if p.is_file())
    assert tiny.size_bytes == expected

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # wins over HF_HOME
    monkeypatch.setenv("HF_HOME", str(tmp_path / "elsewhere"))
    code, data, stderr = run_json(cli)
    assert code == 0, stderr
    assert data["cache"]["path"] == str(cache)
    listed = data["cache"]["pipelines"]
    assert [(p["repo_id"], p["revisions"]) for p in listed] == [
        ("org/tiny-sd", [{"commit": COMMIT, "refs": ["main"]}])
    ]
    assert "org/tiny-sd" in cli("info").stdout


def test_missing_cache_is_reported_not_an_error(tmp_path: Path) -> None:
    found = environment.cached_pipelines(tmp_path / "nothing-here")
    assert not found.exists and found.pipelines == ()


# --- the check ---


def test_check_passes_on_cpu_with_timed_stages(cli) -> None:
    code, data, stderr = run_json(cli, "--check", "--device", "cpu")
    assert code == 0, stderr
    result = data["check"]
    assert set(result) == CHECK_KEYS
    assert result["ok"] and result["error"] is None and result["failed_stage"] is None
    assert [s["name"] for s in result["stages"]] == TINY_STAGES and all(s["ok"] for s in result["stages"])
    assert (result["device"], result["dtype"], result["model"]) == ("cpu", "fp32", "tiny")
    assert (result["width"], result["height"], result["steps"]) == (64, 64, 2)
    assert result["pipeline"] == "StableDiffusionPipeline"
    assert 0 < result["total_seconds"] < 30


def test_check_table_for_people(cli) -> None:
    result = cli("info", "--check")
    assert result.exit_code == 0, result.stderr
    assert "check passed" in result.stdout
    for stage in TINY_STAGES:
        assert stage in result.stdout


def test_check_on_missing_cuda_exits_5_saying_what_torch_sees(cli) -> None:
    result = cli("info", "--check", "--device", "cuda", "--dtype", "fp16")
    assert result.exit_code == 5
    assert "error: --device cuda: CUDA is not available; torch " in result.stderr
    assert "sees: cpu" in result.stderr
    assert "stage" not in result.stdout  # failed before any stage ran


def test_check_a_model_folder(cli, tiny_sd: Path) -> None:
    code, data, stderr = run_json(cli, "--check", "--model", str(tiny_sd))
    assert code == 0, stderr
    result = data["check"]
    assert result["ok"] and result["model"] == str(tiny_sd)
    assert [s["name"] for s in result["stages"]] == ["import", "load", "denoise+decode", "verify"]
    assert (result["width"], result["height"]) == (64, 64)  # the tiny model's native size, under 256


def test_check_a_cached_hub_model_without_network(
    cli, tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    hub_cache(cache, "org/tiny-sd", tiny_sd)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub read HF_HUB_CACHE when it was imported; loading goes through it.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    code, data, stderr = run_json(cli, "--check", "-m", "org/tiny-sd")
    assert code == 0, stderr
    assert data["check"]["ok"] and data["check"]["model"] == "org/tiny-sd"
    missing = cli("info", "--check", "-m", "org/not-cached")
    assert missing.exit_code == 3, missing.stderr


def test_a_nan_image_fails_the_verify_stage_with_exit_7(cli, nan_decode) -> None:
    result = cli("info", "--check", "--json")
    assert result.exit_code == 7
    assert "error: stage 'verify' failed: 100% of the decoded image's values are NaN or Inf" in result.stderr
    report = json.loads(result.stdout)["check"]  # CI still gets the timings up to the failure
    assert not report["ok"] and report["failed_stage"] == "verify"
    stages = [(s["name"], s["ok"]) for s in report["stages"]]
    assert stages[-2:] == [("denoise+decode", True), ("verify", False)]


def test_an_all_black_model_image_fails_verify(cli, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import AutoencoderKL

    original = AutoencoderKL.decode

    def black(self, z, return_dict=True, generator=None):
        return (original(self, z, return_dict=False, generator=generator)[0] * 0 - 1,)

    monkeypatch.setattr(AutoencoderKL, "decode", black)
    result = cli("info", "--check", "-m", tiny_sd)
    assert result.exit_code == 7
    assert "stage 'verify' failed: the image is all black" in result.stderr
    assert "FAILED" in result.stdout and "failed" in result.stdout


def test_any_failing_stage_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(run) -> None:
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setattr(check, "_to_device", broken)
    expected = r"^stage 'to-device' failed: RuntimeError: no kernel image"
    with pytest.raises(CheckFailed, match=expected) as info:
        check.run_check("cpu")
    assert isinstance(info.value, check.StageFailed) and info.value.stage == "to-device"
    assert [s.name for s in info.value.report.stages] == ["import", "build", "to-device"]


# --- speed ---

PROBE = """
import sys, time
began = time.perf_counter()
sys.argv = ["sdcli", "info", "--json"]
from sdcli.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print("EXIT", code, "DIFFUSERS", "diffusers" in sys.modules, "TRANSFORMERS", "transformers" in sys.modules,
      file=sys.stderr)
"""


@pytest.mark.slow
def test_report_never_imports_diffusers_or_transformers() -> None:
    # What keeps `info` near the cost of `import torch`; timing it would be flaky on shared CPUs.
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"EXIT (0|None) DIFFUSERS False TRANSFORMERS False", last), proc.stderr
    json.loads(proc.stdout)
