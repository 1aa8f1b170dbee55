"""Imports flow one way: the layer order of docs/architecture.md, checked on every import.

Every ``import`` and ``from ... import`` in ``src/modelminder`` counts, at module level or
inside a function (a function-local import is still a dependency; it only hides it). A module
may import its own package and packages in lower layers; never a peer package of its own layer
or one above it. And no two modules import each other, directly or round a loop.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "modelminder"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

# Bottom to top. A unit is a subpackage or a top-level module of modelminder.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("clock", "durations", "jsonable", "metrics"),
    ("store", "sim"),
    ("events",),
    ("features",),
    ("model",),
    ("project", "logreplay"),
    ("registry",),
    ("review",),
    ("training", "monitoring"),
    ("serving", "report"),
    ("workflows",),
    ("loop",),
    ("cli_common",),
    ("cli_loop", "cli_models", "cli_monitor", "cli_review", "cli_serve", "demo"),
    ("cli", "__main__", "__init__"),
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(target: str, known: dict[str, Path]) -> str:
    """The module a dotted target names (``a.b.C`` -> ``a.b`` when C is not a module)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every modelminder import in the file, at any depth."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" for a in node.names]
        for t in targets:
            if t == "modelminder" or t.startswith("modelminder."):
                resolved = _resolve(t, known)
                if resolved and resolved != module:
                    out.append((resolved, node.lineno))
    return out


def _graph() -> dict[str, list[tuple[str, int]]]:
    known = _modules()
    return {m: imports_of(m, p, known) for m, p in sorted(known.items())}


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m in _modules()}
    missing = sorted(units - set(LAYER_OF))
    assert not missing, f"Place these in LAYERS (and docs/architecture.md): {missing}"


def test_imports_only_go_down() -> None:
    violations = []
    for module, targets in _graph().items():
        mine = _unit(module)
        for target, line in targets:
            theirs = _unit(target)
            if theirs == mine or (theirs == "__init__" and target == "modelminder"):
                continue
            if LAYER_OF[theirs] >= LAYER_OF[mine]:
                kind = "a peer" if LAYER_OF[theirs] == LAYER_OF[mine] else "upward"
                violations.append(f"{module}:{line} imports {target} ({kind}: {mine} -> {theirs})")
    assert not violations, "\n".join(violations)


def test_no_import_cycles_between_modules() -> None:
    graph = {m: sorted({t for t, _ in ts}) for m, ts in _graph().items()}
    # A package's __init__ re-exporting its modules is not a cycle with them.
    edges = {
        m: [t for t in ts if not (m.startswith(t + ".") and _modules()[t].name == "__init__.py")]
        for m, ts in graph.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    known = {"modelminder.a.x": tmp_path / "x.py", "modelminder.b": tmp_path / "b.py"}
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from modelminder.b import thing\n\nfrom .. import b\n")
    found = imports_of("modelminder.a.x", src, known)
    assert ("modelminder.b", 2) in found and ("modelminder.b", 4) in found


def test_architecture_doc_lists_the_same_layers() -> None:
    text = DOC.read_text()
    rows = [r for r in text.splitlines() if re.match(r"^\|\s*\d+\s*\|", r)]
    documented = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        documented.append(tuple(sorted(re.findall(r"`([\w_]+)`", cells[1]))))
    assert documented == [tuple(sorted(layer)) for layer in reversed(LAYERS)], (
        "docs/architecture.md's layer table (top to bottom) must match LAYERS in this test"
    )


@pytest.mark.parametrize("unit", sorted(LAYER_OF))
def test_layer_names_are_real(unit: str) -> None:
    exists = (PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").exists()
    assert exists or unit in ("__init__", "__main__"), unit
