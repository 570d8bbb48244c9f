"""What every figure shares: a ``Figure`` on an Agg canvas, atomic PNG writes, and each
method's colour, marker and label from its registry entry (a variant such as
``batchensemble_ones`` is drawn like its method).

No global matplotlib state is touched (no pyplot): each figure is built on its own
``FigureCanvasAgg``, so figures render the same with or without a display and from any thread.
matplotlib is imported where a figure is drawn: it is heavy, and the experiments (hence every
``ensemblekit`` command, drawing or not) import the figure modules.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..methods import MethodEntry, method_entry
from ..report.labels import base_method, method_label

#: The colour and marker of a name that is no method (an entry's defaults).
_DEFAULTS = {field.name: field.default for field in dataclasses.fields(MethodEntry)}
DEFAULT_STYLE = (_DEFAULTS["color"], _DEFAULTS["marker"])


def new_figure(width: float, height: float):
    """A ``Figure`` on an Agg canvas, laid out automatically."""
    # matplotlib: heavy, needed only when a figure is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: str | os.PathLike) -> Path:
    """Render ``figure`` to PNG at ``path`` atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def method_style(name: str) -> tuple[str, str]:
    """``(colour, marker)`` of a method (or a variant of one): its entry's."""
    base = base_method(name)
    if base is None:
        return DEFAULT_STYLE
    entry = method_entry(base)
    return entry.color, entry.marker


#: A method's (or variant's) label in a figure: the reports' (registry) label.
label = method_label
