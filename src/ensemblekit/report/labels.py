"""How tables and figures name a method: from its registry entry, never from a list here.

A registered method is called by its entry's ``label``. A name made of a registered method and
a suffix -- a variant the experiments run beside it -- is called by the method's label and the
suffix: one of the entry's diversity ``controls`` by its options (``batchensemble_ones`` ->
"BatchEnsemble (init ones)"), any other suffix as it is (the cost table's tiled pass,
``masksembles_tiled`` -> "Masksembles (tiled)"). Any other name is printed as it is.
"""

from __future__ import annotations

from ..methods import available_methods, method_entry
from ..methods.claims import SHORT_LABELS


def method_label(name: str) -> str:
    """The label of method (or variant) ``name`` (module docstring)."""
    if name in available_methods():
        return method_entry(name).label
    base = base_method(name)
    if base is None:
        return name
    entry = method_entry(base)
    suffix = name[len(base) + 1:]
    options = entry.controls.get(suffix)
    detail = (", ".join(f"{key} {value}" for key, value in options.items()) if options
              else suffix)
    return f"{entry.label} ({detail})"


def short_label(name: str) -> str:
    """A short name where there is little room (``"DE"``), else the label."""
    return SHORT_LABELS.get(name) or method_label(name)


def base_method(name: str) -> str | None:
    """The registered method ``name`` is, or the longest one it is a variant of
    (``<method>_<suffix>``); None for any other name."""
    if name in available_methods():
        return name
    bases = [m for m in available_methods() if name.startswith(f"{m}_") and len(name) > len(m) + 1]
    return max(bases, key=len) if bases else None
