"""The sweep's figure (``ensemblekit sweep``): the swept method's metrics against its scale,
one line per member count, beside the reference methods.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ._style import label, method_style, new_figure, save_figure


def sweep_plot(
    sweep: dict,
    path: str | os.PathLike,
    *,
    metrics: Sequence[tuple[str, str]],
    grid: str,
    title: str = "",
) -> Path:
    """The swept method's metrics against its scale, one line per member count n (shades of
    its colour), with the reference methods as horizontal lines (their band: ± one std over
    seeds).

    ``sweep``: ``{grid: {n: {scale: {metric: {"mean", "std"}}}}, "references": {method:
    {metric: {"mean", "std"}}}}``; ``metrics``: ``(key, axis label)`` pairs; ``grid``: the
    swept method.
    """
    figure = new_figure(3.1 * len(metrics) + 2.0, 3.3)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    name = label(grid)
    colour, marker = method_style(grid)
    points = sweep[grid]
    ns = sorted(points, key=int)
    shades = _shades(colour, len(ns))
    for axis, (metric, caption) in zip(axes, metrics, strict=True):
        for shade, n in zip(shades, ns, strict=True):
            scales = sorted(points[n], key=float)
            means = [points[n][s][metric]["mean"] for s in scales]
            stds = [points[n][s][metric]["std"] for s in scales]
            axis.errorbar([float(s) for s in scales], means, yerr=stds, color=shade,
                          marker=marker, markersize=4, capsize=2, label=f"{name} n={n}")
        for method, values in sweep.get("references", {}).items():
            if metric not in values:  # e.g. the disagreement of a single model
                continue
            reference, _ = method_style(method)
            mean, std = values[metric]["mean"], values[metric]["std"]
            axis.axhline(mean, color=reference, linestyle="--", linewidth=1.2,
                         label=label(method))
            if std > 0:
                axis.axhspan(mean - std, mean + std, color=reference, alpha=0.12, linewidth=0)
        axis.set_xscale("log")
        all_scales = sorted({float(s) for n in ns for s in points[n]})
        axis.set_xticks(all_scales, [f"{s:g}" for s in all_scales])
        axis.minorticks_off()
        axis.set_xlabel(f"{name} scale")
        axis.set_title(caption, fontsize=10)
        axis.grid(alpha=0.3)
    # The first panel has every line (a single model has no disagreement): one legend for all.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=11)
    return save_figure(figure, path)


def _shades(colour: str, count: int) -> list:
    """``count`` shades of ``colour`` from light to dark (one per member count)."""
    # matplotlib: heavy, needed only when drawing
    from matplotlib.colors import LinearSegmentedColormap, to_rgb

    dark = tuple(0.5 * c for c in to_rgb(colour))
    cmap = LinearSegmentedColormap.from_list("shades", ["white", colour, dark])
    return [cmap(0.3 + 0.55 * i / max(count - 1, 1)) for i in range(count)]
