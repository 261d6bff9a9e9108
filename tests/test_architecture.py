"""The rooms of grader/ and what may import what (docs/ARCHITECTURE.md), read from the source.

Every import counts, also those inside functions: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from grader.kit.paths import REPO_ROOT

# Lower rooms never import higher ones.
ROOM_ORDER = ("kit", "refnet", "pipeline", "authoring", "cli")
CHILD_SIDE = ("grader.probe", "grader.drivers")   # modules that run inside the sandbox


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "grader" or len(parts) == 1:
        return "pipeline" if module == "grader" else "outside"
    if parts[1] in ("kit", "refnet", "authoring"):
        return parts[1]
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return "pipeline"


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def kit_modules() -> dict[str, Path]:
    found = {}
    for top in ("grader", "pycnml", "pycnnl"):
        for path in sorted((REPO_ROOT / top).rglob("*.py")):
            if "reference" in path.relative_to(REPO_ROOT).parts:
                continue   # student-shaped solution files, loaded by path, not imported
            found[module_name(path)] = path
    return found


MODULES = kit_modules()


def imports_of(path: Path, module: str) -> set[str]:
    """Modules of the kit that ``path`` imports (``from a import b`` -> a.b when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names}
            found.update(submodules)
            # `from pkg import submodule` needs the submodule, not whatever else pkg imports.
            if not all(name in MODULES for name in submodules):
                found.add(target)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {name: imports_of(path, name) for name, path in MODULES.items()}


def test_the_scan_sees_the_rooms():
    rooms = {room(m) for m in MODULES if m.startswith("grader")}
    assert {"kit", "refnet", "pipeline", "authoring", "cli"} <= rooms
    assert "grader.kit.paths" in GRAPH["grader.session"] or any("grader.kit" in d for d in GRAPH["grader.session"])


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("grader")))
def test_no_room_imports_a_higher_one(module):
    mine = ROOM_ORDER.index(room(module))
    higher = sorted(d for d in GRAPH[module] if d.startswith("grader") and ROOM_ORDER.index(room(d)) > mine)
    assert not higher, f"{module} ({room(module)}) imports {higher}"


def test_child_side_uses_the_kit_only():
    for module, deps in GRAPH.items():
        if module.startswith(CHILD_SIDE):
            bad = sorted(d for d in deps if d.startswith("grader") and not d.startswith(("grader.kit",) + CHILD_SIDE)
                         and d != "grader")
            assert not bad, f"{module} runs in the sandbox but imports {bad}"


def test_runners_use_the_kit_only():
    for path in sorted(REPO_ROOT.glob("exp_*/main_exp_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        bad = sorted(n for n in names if n.startswith("grader") and not n.startswith("grader.kit")
                     and n not in RUNNER_KIT_ONLY.get(path.name, ()))
        assert not bad, f"{path.relative_to(REPO_ROOT)} imports {bad}"


# Instructor-side extras a runner may import lazily, with a clear error where the student
# handout lacks them: the 3.3 runner's --kit-loop (the kit's copy of figure 3.21).
RUNNER_KIT_ONLY = {"main_exp_3_3.py": ("grader.refnet",)}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_circles():
    # A package importing its own submodules (grader.batch -> grader.batch.scheduler) is not
    # a circle unless a submodule imports the package back.
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_planted_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
