"""The layers depend one way: store <- cluster <- node <- scripts. Nothing imports upward.

store is the replicated state (it knows nothing of who owns what or of HTTP), cluster decides who
owns what (it knows nothing of serving or firing), node is one process. The check reads every
module's imports with `ast`, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("store", "cluster", "node")
# What each layer may import of the project: itself and the layers below it.
ALLOWED = {layer: frozenset(LAYERS[: index + 1]) for index, layer in enumerate(LAYERS)}


def project_imports(path: Path) -> set[str]:
    """The top-level project packages (and `tests`, `scripts`) a module imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names}
    return found & {*LAYERS, "tests", "scripts"}


def modules_of(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_itself_and_the_layers_below(layer: str) -> None:
    modules = modules_of(layer)
    assert modules, f"no modules under {layer}/"
    upward = {
        str(path.relative_to(ROOT)): sorted(project_imports(path) - ALLOWED[layer])
        for path in modules
    }
    assert {path: names for path, names in upward.items() if names} == {}


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "upward.py"
    module.write_text("def f() -> None:\n    from node.server import Node\n")
    assert project_imports(module) == {"node"}
