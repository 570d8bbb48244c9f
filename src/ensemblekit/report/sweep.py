"""The sweep's ``sweep.md``: one table row per (n, scale) of the swept method and per reference
method, from the ``sweep.json`` content (:func:`ensemblekit.experiments.sweep.run_sweep`).
"""

from __future__ import annotations

from ._format import pm
from .labels import method_label


def sweep_markdown(result: dict, metrics, *, grid: str) -> str:
    """One table row per (n, scale) of ``result[grid]`` (``{n: {scale: {metric: {"mean",
    "std"}}}}``, the swept method) and per reference method; ``metrics``: ``(key, caption)``
    of each column."""
    header = "| model | " + " | ".join(caption for _, caption in metrics) + " |"
    lines = [f"# {method_label(grid)} transition on {result['dataset']}", "", header,
             "|---|" + "---:|" * len(metrics)]
    for n, by_scale in result[grid].items():
        for scale, values in by_scale.items():
            lines.append(f"| {method_label(grid)} n={n} scale={scale} | "
                         + " | ".join(_cell(values, key) for key, _ in metrics) + " |")
    for method, values in result["references"].items():
        lines.append(f"| {method} | " + " | ".join(_cell(values, key) for key, _ in metrics)
                     + " |")
    return "\n".join([*lines, "", "![sweep](sweep.png)", ""])


def _cell(values: dict, key: str) -> str:
    return pm(values[key], digits=4) if key in values else "-"
