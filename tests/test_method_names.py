"""A method is one registry entry: outside the method code, no module names a method.

``method_name_literals`` walks every module of the package with ``ast`` and lists the string
constants equal to a registered method's name, outside the folders that implement methods
(``methods/``, ``layers/``, ``models/``, ``convert``, ``compile/``). Run this file directly to
print them: ``python tests/test_method_names.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ensemblekit
from ensemblekit.methods import available_methods

PACKAGE = Path(ensemblekit.__file__).parent
#: Where methods are implemented: naming them there is the point.
METHOD_CODE = ("methods", "layers", "models", "convert", "convert.py", "compile")
#: At most this many method names may remain in the rest of the package (issue 18).
LIMIT = 3


def method_name_literals(root: Path = PACKAGE) -> list[tuple[str, int, str, str]]:
    """``(module, line, name, function)`` of every string constant equal to a registered
    method's name outside :data:`METHOD_CODE` (``function``: the enclosing top-level def, or
    "")."""
    names = set(available_methods())
    found = []
    for path in sorted(root.rglob("*.py")):
        module = path.relative_to(root).as_posix()
        if module.split("/")[0] in METHOD_CODE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for top in tree.body:
            function = top.name if isinstance(top, ast.FunctionDef | ast.ClassDef) else ""
            for node in ast.walk(top):
                if isinstance(node, ast.Constant) and node.value in names:
                    found.append((module, node.lineno, node.value, function))
    return found


def test_method_names_appear_only_in_the_method_code():
    outside = method_name_literals()
    where = "; ".join(f"{module}:{line} {name!r}" for module, line, name, _ in outside)
    assert len(outside) <= LIMIT, f"{len(outside)} method names outside the method code: {where}"


def test_the_count_sees_a_method_name():
    # the walk finds what it looks for: the registry's own module names every method
    names = method_name_literals(PACKAGE / "methods")
    assert {name for _, _, name, _ in names} == set(available_methods())


if __name__ == "__main__":
    literals = method_name_literals()
    for literal in literals:
        print(*literal)
    print(f"{len(literals)} outside the method code")
