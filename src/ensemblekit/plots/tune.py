"""The tune report's figure (``pareto.png``): cost against validation NLL and ECE, every grid
point in its method's colour, the Pareto fronts and the picks.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..report.tune import COST_CAPTIONS, front_kinds, front_metrics, metric_name
from ._style import label, method_style, new_figure, save_figure


def pareto_figure(result: dict, path: str | os.PathLike,
                  cost_entries: dict[str, str]) -> Path:
    """Validation NLL and ECE (rows) against each cost ratio (columns, log scale): every point
    in its method's colour, the front as a step line, the picks circled. ``result``: the
    ``tune.json`` content; ``cost_entries``: ``{cost kind: the cost entry its ratio is}``."""
    rows = result["rows"]
    by_id = {row["id"]: row for row in rows}
    metrics, kinds = front_metrics(result), front_kinds(result)
    figure = new_figure(11.5, 6.4)
    axes = figure.subplots(len(metrics), len(kinds), squeeze=False)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    for r, metric in enumerate(metrics):
        for c, kind in enumerate(kinds):
            axis = axes[r][c]
            entry = cost_entries[kind]
            for method in methods:
                colour, marker = method_style(method)
                mine = [row for row in rows if row["method"] == method]
                axis.scatter([row["cost"][entry] for row in mine],
                             [row[metric]["mean"] for row in mine], color=colour,
                             marker=marker, s=26, alpha=0.85, label=label(method))
            front = [by_id[name] for name in result["fronts"][f"{kind}/{metric}"]]
            axis.step([row["cost"][entry] for row in front],
                      [row[metric]["mean"] for row in front], where="post", color="black",
                      linewidth=1.0, marker="o", markersize=3, label="Pareto front")
            picked = [row for row in rows if row["picked"]]
            axis.scatter([row["cost"][entry] for row in picked],
                         [row[metric]["mean"] for row in picked], facecolors="none",
                         edgecolors="black", s=110, linewidths=1.2, label="picked")
            _ratio_axis(axis, [row["cost"][entry] for row in rows])
            axis.set_xlabel(f"{COST_CAPTIONS.get(kind, kind)} (x single)")
            axis.set_ylabel(f"validation {metric_name(result, metric)}")
            axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    names = " / ".join(metric_name(result, metric) for metric in metrics)
    figure.suptitle(f"Cost vs validation {names} on {result['dataset']}", fontsize=11)
    return save_figure(figure, path)


def _ratio_axis(axis, ratios: list[float]) -> None:
    """A log axis of cost ratios, ticked at round multiples (0.5x, 1x, 2x, ...)."""
    from matplotlib.ticker import FixedLocator, NullLocator  # heavy, needed only when drawing

    axis.set_xscale("log")
    low, high = min(ratios), max(ratios)
    ticks = [t for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 32)
             if low / 1.15 <= t <= high * 1.15] or [1]
    axis.xaxis.set_major_locator(FixedLocator(ticks))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticklabels([f"{t:g}x" for t in ticks])
