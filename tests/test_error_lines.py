"""Every failure is one `error:` line (and maybe a `hint:`), and never shows a Hub token (issue #22)."""

from __future__ import annotations

from pathlib import Path

import pytest

TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"


def lines(stderr: str) -> list[str]:
    return stderr.strip().splitlines()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("generate", "a cat", "--seed", "abc"), "error: invalid value for '--seed': "),
        (("generate", "a cat", "--steps", "1.5"), "error: invalid value for '--steps' / '-s': "),
        (("generate", "a cat", "--no-such-option"), "error: No such option: --no-such-option"),
        (("--no-such-option",), "error: No such option: --no-such-option"),
        (("genrate", "a cat"), "error: No such command 'genrate'"),
    ],
)
def test_click_usage_errors_are_one_line(cli, args: tuple[str, ...], needle: str) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert lines(result.stderr)[0].startswith(needle), result.stderr
    assert len(lines(result.stderr)) == 2 and lines(result.stderr)[1].startswith("hint: see 'sdcli")
    assert "Usage:" not in result.stderr and "SDCLI_STEPS" not in result.stderr


def test_no_arguments_still_prints_the_help(cli) -> None:
    result = cli()
    assert "Usage:" in result.stdout + result.stderr and "generate" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "shown"),
    [('steps = "many"', "steps = 'many' is not valid"), ("seed = 1.5", "seed = 1.5 is not valid")],
)
def test_bad_config_value_names_the_config_file(cli, monkeypatch, tmp_path: Path, text: str, shown: str):
    path = tmp_path / "config.toml"
    path.write_text(text + "\n")
    monkeypatch.setenv("SDCLI_CONFIG", str(path))
    result = cli("generate", "a cat", "-m", "some/model")
    assert result.exit_code == 2
    assert lines(result.stderr)[0].startswith(f"error: config file {path}: {shown}: "), result.stderr
    assert len(lines(result.stderr)) == 2 and "SDCLI_" not in result.stderr and "Usage:" not in result.stderr


def test_bad_environment_value_names_the_variable(cli, monkeypatch) -> None:
    monkeypatch.setenv("SDCLI_STEPS", "lots")
    result = cli("generate", "a cat", "-m", "some/model")
    assert result.exit_code == 2
    first = lines(result.stderr)[0]
    assert first.startswith("error: invalid value for '--steps' / '-s' from SDCLI_STEPS='lots': "), first


def test_a_newline_in_a_path_stays_on_the_error_line(cli) -> None:
    result = cli("generate", "--from", "two\nlines.png", "-m", "some/model")
    assert result.exit_code == 2
    assert lines(result.stderr) == ["error: two\\nlines.png: no such file"]


def test_control_characters_never_reach_the_terminal(cli) -> None:
    result = cli("generate", "--from", "\x1b[2Jx.png", "-m", "some/model")
    assert "\x1b" not in result.stderr and "\\x1b[2Jx.png: no such file" in result.stderr


@pytest.mark.parametrize("debug", [False, True])
def test_tokens_never_printed_even_in_debug_tracebacks(cli, monkeypatch, debug: bool) -> None:
    monkeypatch.setenv("HF_TOKEN", "not-token-shaped-secret")
    # A real failure whose message (and traceback) carries both secrets: a model path that names them.
    model = f"./{TOKEN}/not-token-shaped-secret.safetensors"
    result = cli(*(["--debug"] if debug else []), "generate", "a cat", "-m", model)
    assert result.exit_code in (2, 3), result.stderr
    assert ("Traceback" in result.stderr) == debug
    assert TOKEN not in result.stderr and "not-token-shaped-secret" not in result.stderr
    assert "hf_***" in result.stderr


@pytest.mark.parametrize("model", ["../../etc", "/etc", "a b"])
def test_download_of_a_path_offline_does_not_suggest_downloading_it(cli, model: str) -> None:
    result = cli("download", model, "--offline")
    assert result.exit_code == 2, result.stderr
    assert f"'{model}' is not a valid model id" in result.stderr
    assert "sdcli download" not in result.stderr and "local cache" not in result.stderr
