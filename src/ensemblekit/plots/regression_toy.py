"""The regression toy's figure (``ensemblekit toy --task regression``): per 1-D problem two rows
of panels, one model per column -- the predictive mean with +- 2 sigma of its epistemic part in
the first row and of its aleatoric part in the second, the total +- 2 sigma dashed in both, the
true function, its noise band and the training points.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._style import new_figure, save_figure

#: The two parts of the predictive variance, one row each: (key, label, colour).
PARTS = (("epistemic_std", "epistemic ± 2σ", "#1f77b4"),
         ("aleatoric_std", "aleatoric ± 2σ", "#ff7f0e"))


def regression_bands(rows: Sequence[dict], titles: Sequence[str], path: str | os.PathLike, *,
                     title: str = "") -> Path:
    """``rows``: one dict per problem with its grid ``"x"`` (G,), ``"truth_mean"`` and
    ``"truth_std"`` (G,), ``"train_x"`` / ``"train_y"`` (N,) and ``"panels"``: per model
    ``{"mean", "epistemic_std", "aleatoric_std"}`` (G,) each, in the targets' units;
    ``titles``: the models' panel titles. Panels of one problem share their y-axis range."""
    from matplotlib.lines import Line2D  # matplotlib: heavy, needed only when drawing
    from matplotlib.patches import Patch

    columns = len(titles)
    figure = new_figure(2.35 * columns + 0.6, 2.0 * 2 * len(rows) + 1.0)
    axes = figure.subplots(2 * len(rows), columns, squeeze=False, sharex="row")
    for index, row in enumerate(rows):
        x = np.asarray(row["x"])
        truth, noise = np.asarray(row["truth_mean"]), np.asarray(row["truth_std"])
        spread = truth.max() - truth.min()
        limits = (truth.min() - 0.35 * spread, truth.max() + 0.35 * spread)
        for part, (key, name, colour) in enumerate(PARTS):
            line = axes[2 * index + part]
            for column, panel in enumerate(row["panels"]):
                axis = line[column]
                mean = np.asarray(panel["mean"])
                std = np.asarray(panel[key])
                total = np.hypot(np.asarray(panel["epistemic_std"]),
                                 np.asarray(panel["aleatoric_std"]))
                axis.fill_between(x, truth - 2 * noise, truth + 2 * noise, color="#dddddd",
                                  linewidth=0)
                axis.plot(x, truth, color="black", linewidth=0.8, linestyle=":")
                axis.fill_between(x, mean - 2 * std, mean + 2 * std, color=colour, alpha=0.45,
                                  linewidth=0)
                axis.plot(x, mean - 2 * total, color="#444444", linewidth=0.7, linestyle="--")
                axis.plot(x, mean + 2 * total, color="#444444", linewidth=0.7, linestyle="--")
                axis.plot(x, mean, color=colour, linewidth=1.3)
                axis.scatter(row["train_x"], row["train_y"], s=6, color="black", zorder=3)
                axis.set_ylim(*limits)
                axis.tick_params(labelsize=7)
                if index == 0 and part == 0:
                    axis.set_title(titles[column], fontsize=9)
                if column == 0:
                    axis.set_ylabel(f"{row['name']}\n{name}", fontsize=8)
                else:
                    axis.set_yticklabels([])
    handles = [Patch(color=colour, alpha=0.45, label=name) for _, name, colour in PARTS]
    handles += [Line2D([], [], color="#444444", linestyle="--", linewidth=0.7,
                       label="total ± 2σ"),
                Patch(color="#dddddd", label="true noise ± 2σ"),
                Line2D([], [], color="black", linestyle=":", label="true function"),
                Line2D([], [], color="black", marker="o", linestyle="", markersize=3,
                       label="training points")]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                  fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=11)
    return save_figure(figure, path)
