"""The import graph points one way: no cycles, and the lower layers never import the upper ones.

Read from the source (every ``import`` and ``from ... import``, also inside
functions; not under ``if TYPE_CHECKING``), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pgrun"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """The pgrun modules ``path`` imports (``from pgrun.x import y`` counts as pgrun.x.y when that is a module)."""
    found: set[str] = set()

    def visit(node: ast.AST, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            guarded = type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if not guarded and isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    found.add(full if full in MODULES else child.module)
            elif not guarded and isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            visit(child, guarded)

    visit(ast.parse(path.read_text()), False)
    return {name for name in found if name in MODULES and name != module_name(path)}


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_the_graph_reader_sees_imports_and_cycles():
    assert "pgrun.types" in GRAPH["pgrun.algos.ppo"] and "pgrun.errors" in GRAPH["pgrun.config"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def reachable(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for nxt in GRAPH[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


# What each layer may never reach, directly or through others.
UPPER = {"pgrun.config", "pgrun.train", "pgrun.run", "pgrun.logger", "pgrun.evaluate", "pgrun.report",
         "pgrun.checkpoint", "pgrun.summary", "pgrun.trained", "pgrun.run_folder"}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n in ("pgrun.errors", "pgrun.names", "pgrun.types")
                                        or n.startswith("pgrun.envs")))
def test_the_vocabulary_and_the_environments_import_nothing_above_them(name):
    assert not reachable(name) & (UPPER | {n for n in MODULES if n.startswith("pgrun.algos")}), name


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("pgrun.algos")))
def test_algorithms_know_nothing_of_the_loop_logging_files_or_hydra(name):
    assert not reachable(name) & UPPER, (name, sorted(reachable(name) & UPPER))
    assert "hydra" not in MODULES[name].read_text()


def test_the_trainer_knows_no_logger():
    assert not reachable("pgrun.train") & {"pgrun.logger", "pgrun.run", "pgrun.summary", "pgrun.run_folder"}


# The front ends and the places a newcomer reads first stay short.
SHORT_FUNCTIONS = ["pgrun.run", "pgrun.train"] + sorted(n for n in MODULES if n.startswith("pgrun.commands"))


@pytest.mark.parametrize("name", SHORT_FUNCTIONS)
def test_no_function_of_the_driver_trainer_or_front_ends_is_longer_than_60_lines(name):
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(MODULES[name].read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60]
    assert not long, long


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith("pgrun.commands") and n != "pgrun.__main__"))
def test_only_the_front_ends_parse_arguments_or_exit(name):
    source = MODULES[name].read_text()
    assert "argparse" not in source and "sys.exit(" not in source, name
    assert not reachable(name) & {n for n in MODULES if n.startswith("pgrun.commands")}, name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_public_function_and_class_says_what_it_is_for(name):
    tree = ast.parse(MODULES[name].read_text())
    assert ast.get_docstring(tree), f"{name} has no module docstring"
    missing = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
               and not node.name.startswith("_") and ast.get_docstring(node) is None]
    assert not missing, (name, missing)
