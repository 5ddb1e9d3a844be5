"""The package's import structure: layers that only import downwards, and no import cycle.

Reads every module's ``import`` statements (no code runs), so a new arrow from a lower layer to a higher one, or
a new cycle, fails here with the modules that make it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import attnlab

ROOT = Path(attnlab.__file__).parent

# bottom to top; a module may import its own part and the parts of lower layers, never a higher layer's
LAYERS = (
    ("attnlab", "errors", "paths", "system", "console", "registry"),  # foundations, no torch
    ("catalog",),  # configurations and the table of models (no torch)
    ("nn", "data", "metrics"),  # attention building blocks, data, scores
    ("models", "decode"),  # networks built from nn, decoding
    ("viz", "report"),  # figures; the run report, read from a run folder alone
    ("experiments",),  # tasks: data, loss, metrics, figures, attention samples
    ("train",),  # the one engine
    ("forecast", "translate", "demo"),  # user-facing APIs and their commands
    ("cli", "__main__", "bench"),  # the command line; benchmarks measure everything below
)
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The attnlab modules ``path`` imports; with ``top_level_only`` only those imported when it loads (not in a
    function body nor under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if top_level_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "attnlab")
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module.split(".")[0] == "attnlab":
                    found.add(child.module)
                    names = (f"{child.module}.{a.name}" for a in child.names)
                    found.update(n for n in names if is_module(n))
            visit(child)

    visit(tree)
    return found


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "attnlab"


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def test_every_part_has_a_layer():
    assert {part_of(m) for m in MODULES} <= set(RANK), "add the new part of the package to LAYERS"


def test_no_import_reaches_a_higher_layer():
    upward = [f"{m} imports {target}"
              for m, path in MODULES.items() for target in sorted(imports(path, top_level_only=False))
              if RANK[part_of(target)] > RANK[part_of(m)]]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_parts_import_each_other_without_a_cycle():
    graph: dict[str, set[str]] = {}
    for m, path in MODULES.items():
        graph.setdefault(part_of(m), set()).update(part_of(t) for t in imports(path, top_level_only=False))
    assert find_cycle({a: targets - {a} for a, targets in graph.items()}) is None


def test_no_module_import_cycle():
    graph = {m: {t for t in imports(p, top_level_only=True) if t in MODULES and t != m} for m, p in MODULES.items()}
    assert find_cycle(graph) is None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the list of its nodes (first = last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize(("graph", "cycle"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"a"}}, ["a", "a"]),
])
def test_find_cycle_finds_cycles(graph, cycle):
    assert find_cycle(graph) == cycle
