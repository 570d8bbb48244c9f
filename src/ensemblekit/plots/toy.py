"""The toy experiment's figure (``ensemblekit toy``): predictive-entropy maps on a 2D plane,
one panel per model, with the training points on top.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._style import new_figure, save_figure

#: Panels per row of the toy figure's grid (legible at 100% zoom: about 3 inches a panel).
TOY_COLUMNS = 4


def entropy_maps(
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    xs: np.ndarray,
    ys: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    max_entropy: float,
    title: str = "",
    columns: int = TOY_COLUMNS,
) -> Path:
    """A grid of predictive-entropy maps (one per model, ``columns`` per row) with the training
    points on top, a legend of the classes and one colour bar.

    ``maps``: ``(len(ys), len(xs))`` arrays of entropies in nats; one colour scale from 0 to
    ``max_entropy`` (log K) for all panels, so panels compare directly. ``points`` (N, 2) with
    ``labels`` (N,).
    """
    from matplotlib.lines import Line2D  # matplotlib: heavy, needed only when drawing

    count = len(maps)
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    aspect = float((ys[-1] - ys[0]) / (xs[-1] - xs[0]))  # panels keep the plane's proportions
    figure = new_figure(3.0 * columns + 1.3, 3.0 * aspect * rows + 1.1)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    image = None
    classes = np.unique(labels)
    colours = ["white", "#ff4040", "#40c0ff", "#ffb000"]
    for axis, entropy, name in zip(axes, maps, titles, strict=False):
        image = axis.pcolormesh(xs, ys, entropy, cmap="viridis", vmin=0.0, vmax=max_entropy,
                                shading="auto", rasterized=True)
        for index, cls in enumerate(classes):
            chosen = labels == cls
            axis.scatter(points[chosen, 0], points[chosen, 1], s=7,
                         c=colours[index % len(colours)], linewidths=0.3,
                         edgecolors="black", alpha=0.9)
        axis.set_title(name, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_aspect("equal")
    for axis in axes[count:]:
        axis.set_visible(False)
    colourbar = figure.colorbar(image, ax=list(axes[:count]), shrink=0.8, pad=0.02)
    colourbar.set_label("predictive entropy (nats)")
    handles = [Line2D([], [], linestyle="", marker="o", markersize=7,
                      markerfacecolor=colours[index % len(colours)], markeredgecolor="black",
                      label=f"class {cls}") for index, cls in enumerate(classes)]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(classes),
                  fontsize=9, frameon=False, title="training points")
    if title:
        figure.suptitle(title, fontsize=11)
    return save_figure(figure, path)
