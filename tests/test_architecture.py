"""Checks that keep the architecture standing: lint, types, import contracts, and the shape of the code.

The tools come from the ``dev`` extra (``pip install -e '.[dev]'``); a test whose tool is missing skips
and says which. Their settings live in pyproject.toml ([tool.ruff], [tool.mypy], [tool.importlinter]).
The import graph below counts function-local imports (they run too) and leaves out imports under
``if TYPE_CHECKING:`` (they never run).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "slimkit"

MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80


def _run_tool(name: str, module: str, *argv: str) -> None:
    """Run ``python argv`` from the repository root on this checkout's sources; fail with the tool's
    output unless it exits 0. Skips when ``module`` (the tool ``name``) is not installed."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{name} is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, f"{name} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"


def test_ruff_is_clean() -> None:
    _run_tool("ruff", "ruff", "-m", "ruff", "check", "--no-cache", "src", "tests", "benchmarks")


def test_mypy_is_clean() -> None:
    """All of src/slimkit, as [tool.mypy] configures it."""
    _run_tool("mypy", "mypy", "-m", "mypy")


def test_import_contracts_are_kept() -> None:
    """The layers, the independence of techniques and core's forbidden imports ([tool.importlinter])."""
    # import-linter has no ``python -m`` entry: its console script's function, in a child process.
    _run_tool("import-linter", "importlinter", "-c", "from importlinter.cli import lint_imports_command as c; c()",
              "--no-logo")


# --- the import graph and the size of the code, from the source alone --------------------------------------


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _run_time_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:`` (its else runs)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    elif isinstance(node, ast.If) and _is_type_checking(node):
        for statement in node.orelse:
            yield from _run_time_imports(statement)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _run_time_imports(child)


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports: ``from a import b`` is ``a.b`` when that is a module, else ``a``."""

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found: set[str] = set()
    for node in _run_time_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [resolve(alias.name) for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            targets = [resolve(f"{base}.{alias.name}") or resolve(base) for alias in node.names]
        found.update(t for t in targets if t)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_import_graph_sees_local_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n"
                              "else:\n    import json\n\ndef f():\n    from . import c\n    from .c import x\n")
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c"}
    assert _imports("pkg.a", pkg / "a.py", known) == {"pkg.c"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_through_others() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "module import cycle: " + " -> ".join(cycle or [])


def test_no_cycle_between_top_level_packages() -> None:
    """Between slimkit.api, slimkit.core, ... (the package face, slimkit/__init__.py, re-exports them all)."""

    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, deps in _graph().items():
        if module == PACKAGE:
            continue
        packages.setdefault(top(module), set()).update(
            top(d) for d in deps if d != PACKAGE and top(d) != top(module))
    cycle = _cycle(packages)
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or [])


def test_no_file_is_too_long() -> None:
    long = {str(p.relative_to(SRC)): n for p in _modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines (split them by concern): {long}"


def test_no_function_is_too_long() -> None:
    long = {}
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(SRC)}:{node.lineno} {node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
