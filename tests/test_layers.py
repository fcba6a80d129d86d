"""The package's layers: every import of an sdcli module (lazy ones inside functions too) points down or
sideways, never up, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sdcli"
# Bottom to top. A module may import its own package and any package below it.
LAYERS = [
    "errors",
    "core",
    "hub",
    "model",
    "images",
    "generation",
    "diagnostics",
    "worker",
    "commands",
    "cli",
    "__main__",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The sdcli modules `path` imports, anywhere in it (`from sdcli.x import y` counts y if it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sdcli":
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "sdcli")
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()
    }


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else 0  # `sdcli` itself holds only __version__


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [m for m in import_graph() if m != "sdcli" and m.split(".")[1] not in LAYERS]
    assert not unplaced, f"modules outside the layers: {unplaced}"


def test_imports_never_point_up() -> None:
    graph = import_graph()
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if target != "sdcli" and layer(target) > layer(module)
    )
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


def test_no_import_circles() -> None:
    graph = import_graph()
    state: dict[str, str] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("package", LAYERS[1:9])
def test_package_inits_hold_no_code(package: str) -> None:
    """`--help` imports the packages on its path: an __init__ that imported anything would tax it."""
    init = ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8"))
    assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in init.body)


def test_the_shell_scripts_python_imports_name_modules_that_exist() -> None:
    """tests/gpu/gpu_check.sh and the examples run Python snippets that no pytest imports: the redesign into
    subpackages once left `from sdcli.tiny import` there, which fails only on the GPU machine."""
    import importlib
    import re

    root = Path(__file__).resolve().parent.parent
    scripts = [*root.glob("tests/gpu/*.sh"), *root.glob("examples/*.sh"), *root.glob("examples/*.py")]
    found = []
    for script in scripts:
        for module, names in re.findall(r"^from (sdcli[\w.]*) import ([\w, ]+)$", script.read_text(), re.M):
            found.append(module)
            imported = importlib.import_module(module)
            missing = [name for name in names.replace(" ", "").split(",") if not hasattr(imported, name)]
            assert not missing, f"{script.name}: {module} has no {missing}"
    assert "sdcli.diagnostics.tiny" in found  # the check saw gpu_check.sh's snippets
