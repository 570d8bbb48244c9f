"""Edit a network's module tree by path: the one place that swaps a submodule.

A bottom-level module (torch only), shared by the converters (:mod:`ensemblekit.convert`) and
the compiled members (:mod:`ensemblekit.compile`).
"""

from __future__ import annotations

from torch import nn


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` at ``path`` (``named_modules`` style, e.g. ``"layer1.0.conv1"``) inside
    ``root``, in place of the module there."""
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)
