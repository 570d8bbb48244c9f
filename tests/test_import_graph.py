"""The package's imports run one way (DESIGN.md): a graph of every in-package import, read
with ``ast`` from the source (no module is imported), must have no cycle and no edge from a
layer to one above it; in-package imports sit at module top.

Layers, lowest first (a module may import its own layer and the layers below):

0. helpers: ``_validation``, ``atomic``, ``seeding``, ``runtime``, ``members``, ``masks``,
   ``example_inputs``,
   ``submodules``;
1. the core: ``layers``, ``models``, ``methods``, ``metrics``, ``data``, ``calibration``,
   ``compile``, ``losses``, ``samplers``, ``distributed`` (acyclic among themselves);
2. what serves a trained model: ``convert``, ``checkpoint``, ``export``;
3. ``predict`` (the one inference loop); 4. ``train``, ``evaluate``; 5. ``stats``;
6. ``report``, ``plots`` (plain dicts in, files out); 7. ``experiments``; 8. ``cli``.

The package ``__init__`` re-exports the public API and sits above everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ensemblekit"

LAYERS = (
    ("_validation", "atomic", "seeding", "runtime", "members", "masks", "submodules",
     "example_inputs"),
    ("layers", "models", "methods", "metrics", "data", "calibration", "compile", "losses",
     "samplers", "distributed"),
    ("convert", "checkpoint", "export"),
    ("predict",),
    ("train", "evaluate"),
    ("stats",),
    ("report", "plots"),
    ("experiments",),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at module top)`` for every in-package import of ``path``."""
    module = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = resolve(module, path.name == "__init__.py", node)
            names = [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name == "ensemblekit" or name.startswith("ensemblekit."):
                found.append((name, node.lineno, id(node) in top))
    return found


def top_level(name: str) -> str:
    """The layer unit of a dotted name: ``ensemblekit.methods.base`` -> ``methods``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _, _ in imports(path):
            # ``from .x import y``: y may be a name in module x or a submodule x.y
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                edges[name].add(target)
    return edges


def test_every_unit_has_a_layer():
    units = {top_level(module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert units - set(RANK) - {"__init__"} == set(), "give every new module a layer here"


def test_no_import_against_the_order():
    wrong = []
    for name, targets in graph().items():
        source = top_level(name)
        if source == "__init__":
            continue
        for target in targets:
            unit = top_level(target)
            if unit == "__init__" or RANK[unit] > RANK[source]:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_no_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_in_package_imports_at_module_top():
    late = [f"{module_name(path)}:{line} imports {target}"
            for path in PACKAGE.rglob("*.py")
            for target, line, at_top in imports(path) if not at_top]
    assert late == []


def test_the_reader_resolves_relative_imports_and_sees_late_ones(tmp_path, monkeypatch):
    # The checks above are only as good as the reader: a relative import two levels up at
    # module top and one inside a function must both be found, the second as late.
    package = tmp_path / "ensemblekit"
    (package / "report").mkdir(parents=True)
    source = package / "report" / "tables.py"
    source.write_text("from ..experiments import runs\n\ndef f():\n    from ..cli import main\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    assert imports(source) == [("ensemblekit.experiments.runs", 1, True),
                               ("ensemblekit.cli.main", 4, False)]
    assert RANK[top_level("ensemblekit.experiments.runs")] > RANK["report"]
