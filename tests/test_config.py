"""Defaults from the config file and SDCLI_* variables, and the order they win in."""

from __future__ import annotations

from pathlib import Path

from tests.png_helpers import ndjson


def test_config_file_then_environment_then_flags(cli, tiny_sd: Path, tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'model = "{tiny_sd}"\nsteps = 2\n[generate]\nguidance = 4.5\nbatch-size = 1\n')
    monkeypatch.setenv("SDCLI_CONFIG", str(config))

    def record(*args: str) -> dict:
        result = cli("generate", "a cat", "--seed", "1", "--json", "-o", "c/", *args)
        assert result.exit_code == 0, result.stderr
        return ndjson(result.stdout)[0][0]["parameters"]

    first = record()
    assert (first["steps"], first["guidance"], first["model"]) == (2, 4.5, "tiny-sd")
    monkeypatch.setenv("SDCLI_STEPS", "3")
    assert record()["steps"] == 3
    assert record("--steps", "1")["steps"] == 1


def test_bad_config_is_a_usage_error(cli, tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text("stepz = 2\n")
    monkeypatch.setenv("SDCLI_CONFIG", str(config))
    result = cli("generate", "a cat")
    assert result.exit_code == 2 and "unknown key(s) stepz" in result.stderr
    config.write_text("steps = [")
    result = cli("generate", "a cat")
    assert result.exit_code == 2 and str(config) in result.stderr
    monkeypatch.setenv("SDCLI_CONFIG", str(tmp_path / "missing.toml"))
    assert cli("generate", "a cat").exit_code == 2
