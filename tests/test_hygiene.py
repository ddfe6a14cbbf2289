"""Invariants of the code base as a whole: no import circles (lazy imports included), no unsafe loading."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from shared.environment import REPO_ROOT

PACKAGES = ("shared", "papers")


def _modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of the packages (tests excluded), by dotted name."""
    out = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            if "tests" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


def import_graph(root: Path = REPO_ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its body (top level or inside a function)."""
    modules = _modules(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_a_planted_circle_through_a_function_level_import_is_found(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import g\n")
    (tmp_path / "pkg" / "b.py").write_text("def g():\n    from . import a\n")
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b"]]


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert len(graph) > 100
    assert "shared.config" in graph["shared.cli"]  # top level
    assert "shared.run" in graph["shared.cli"]  # inside run_command


def test_no_import_circles():
    assert cycles(import_graph()) == []


def _sources() -> list[Path]:
    return [p for pkg in (*PACKAGES, "tests") for p in (REPO_ROOT / pkg).rglob("*.py")]


def test_no_unsafe_loading():
    """torch.load always with weights_only=True (no pickle code from a checkpoint); no remote code from a hub."""
    this = Path(__file__).resolve()
    found = []
    for path in _sources():
        if path.resolve() == this:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"weights_only\s*=\s*False|trust_remote_code\s*=\s*True", line):
                found.append(f"{path.relative_to(REPO_ROOT)}:{i}")
            if re.search(r"\btorch\.load\(", line) and "weights_only=True" not in line:
                found.append(f"{path.relative_to(REPO_ROOT)}:{i} (torch.load without weights_only=True)")
    assert found == []
