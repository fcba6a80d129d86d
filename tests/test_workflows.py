""".github/ (workflows, issue and pull-request templates) and examples/: valid YAML, the shape CI relies on,
and every `sdcli COMMAND --option` they call exists in the CLI, so a renamed command or option fails here
rather than in a GPU job nobody watches."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
SCRIPTS = sorted([*(ROOT / "examples").glob("*.sh"), *(ROOT / "tests" / "gpu").glob("*.sh")])
ISSUE_FORMS = sorted((GITHUB / "ISSUE_TEMPLATE").glob("*.yml"))
TEMPLATES = [*ISSUE_FORMS, GITHUB / "pull_request_template.md"]

# `sdcli WORD rest-of-command`: at the start of a command, after a separator, or as `-m sdcli`.
CALL = re.compile(r"(?:^|[\s;&|(!`])sdcli\s+([a-z][a-z0-9-]*)([^\n]*)")
OPTION = re.compile(r"(?<![\w$-])--[a-z][a-z0-9-]*")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    return {on: None} if isinstance(on, str) else dict(on or {})


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def shell_lines(text: str) -> list[str]:
    """Logical lines of shell: continuations joined, comment lines dropped."""
    text = re.sub(r"\\\n\s*", " ", text)
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def calls(text: str) -> list[tuple[str, list[str]]]:
    """(command, --options) of each sdcli call; a call ends at a pipe, `;`, `&` or `)`."""
    found = []
    for line in text.splitlines():
        for match in CALL.finditer(line):
            rest = re.split(r"[|;&)`]", match.group(2))[0]
            found.append((match.group(1), OPTION.findall(rest)))
    return found


def sdcli_calls() -> dict[str, list[tuple[str, list[str]]]]:
    by_file: dict[str, list[tuple[str, list[str]]]] = {}
    for script in SCRIPTS:
        by_file[str(script.relative_to(ROOT))] = calls("\n".join(shell_lines(script.read_text())))
    for workflow in WORKFLOWS:
        runs = "\n".join(s["run"] for s in steps(load(workflow)) if "run" in s)
        by_file[str(workflow.relative_to(ROOT))] = calls("\n".join(shell_lines(runs)))
    for template in TEMPLATES:  # prose: only `sdcli ...` in backticks is a command
        spans = re.findall(r"`(sdcli [^`\n]*)`", template.read_text())
        by_file[str(template.relative_to(ROOT))] = calls("\n".join(spans))
    return by_file


@pytest.mark.parametrize("path", [*WORKFLOWS, *ISSUE_FORMS], ids=lambda p: p.name)
def test_yaml_files_parse(path: Path) -> None:
    load(path)


def test_actions_are_pinned_to_a_version() -> None:
    for workflow in WORKFLOWS:
        for step in steps(load(workflow)):
            if "uses" in step:
                assert re.search(r"@(v\d+|[0-9a-f]{40})$", step["uses"]), f"{workflow.name}: {step['uses']}"


def test_ci_workflow_runs_ci_run_on_each_python_with_cpu_torch() -> None:
    workflow = load(GITHUB / "workflows" / "ci.yml")
    assert {"push", "pull_request"} <= set(triggers(workflow))
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    assert job["strategy"]["matrix"]["python-version"] == ["3.10", "3.11", "3.12"]  # strings, not 3.1
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip"
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    (ci,) = [s for s in job["steps"] if s.get("run", "").strip() == "bash .ci/run"]
    assert ci["env"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    # .ci/run uses that variable, and lints what the workflow promises.
    script = (ROOT / ".ci" / "run").read_text()
    assert "TORCH_INDEX_URL" in script
    assert all(
        word in script for word in ("ruff check", "ruff format --check", "mypy", "shellcheck", "pytest")
    )


def test_gpu_smoke_workflow_targets_a_gpu_runner_and_keeps_the_image() -> None:
    workflow = load(GITHUB / "workflows" / "gpu-smoke.yml")
    (job,) = workflow["jobs"].values()
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert "vars.SDCLI_MODEL" in job["env"]["SDCLI_MODEL"] and job["env"]["HF_HOME"]
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert "sdcli info --json" in runs
    assert "examples/ci-smoke.sh" in runs and "--offline" in runs
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"].startswith("smoke")


def test_files_the_workflows_run_exist() -> None:
    for workflow in WORKFLOWS:
        runs = "\n".join(s.get("run", "") for s in steps(load(workflow)))
        for path in re.findall(r"(?:\.ci|examples)/[\w.-]+", runs):
            assert (ROOT / path).is_file(), f"{workflow.name} runs {path}, which does not exist"


def test_templates_ask_for_sdcli_info_json() -> None:
    form = load(GITHUB / "ISSUE_TEMPLATE" / "bug_report.yml")
    assert form["name"] and form["description"]
    fields = {item.get("id"): item for item in form["body"] if item["type"] != "markdown"}
    assert "sdcli info --json" in fields["info"]["attributes"]["label"]
    assert fields["info"]["validations"]["required"] is True
    assert "sdcli info --json" in (GITHUB / "pull_request_template.md").read_text()


def test_every_sdcli_command_and_option_they_call_exists(cli) -> None:
    from typer.main import get_command

    from sdcli.cli import app

    commands = get_command(app).commands
    found = sdcli_calls()
    assert all(found[str(s.relative_to(ROOT))] for s in SCRIPTS), "every script calls sdcli"
    for where, used in found.items():
        for command, options in used:
            assert command in commands, f"{where}: `sdcli {command}` is not a command"
            known = {o for p in commands[command].params for o in (*p.opts, *p.secondary_opts)}
            unknown = sorted(set(options) - known - {"--help"})
            assert not unknown, f"{where}: `sdcli {command}` has no {', '.join(unknown)}"
    for command in sorted({command for used in found.values() for command, _ in used}):
        result = cli(command, "--help")
        assert result.exit_code == 0, f"sdcli {command} --help: {result.output}"


def test_the_parser_finds_calls_and_ignores_prose() -> None:
    text = """
# sdcli splits lines itself
"${launch[@]}" -m sdcli generate --prompts-file "$p" -o "$out/" --json "$@" >>"$m"
sdcli info --check --device "$d" --json >"$o" || status=$?
echo "a red boat" | sdcli generate - --json | jq -r .path
"""
    assert calls("\n".join(shell_lines(text))) == [
        ("generate", ["--prompts-file", "--json"]),
        ("info", ["--check", "--device", "--json"]),
        ("generate", ["--json"]),
    ]
