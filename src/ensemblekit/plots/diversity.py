"""Figures of the member-similarity study (``ensemblekit diversity``), from its
``diversity.json`` content:

- ``diversity_heatmaps.png``: member x member matrices of the first seed, one column per
  variant (:data:`HEATMAPS`: disagreement, KL, CKA of two representations, trained weight
  cosine);
- ``diversity_shift.png``: disagreement and mutual information against corruption severity
  (0 = clean), one line per variant, mean ± std over seeds;
- ``diversity_layers.png``: per-layer weight cosine at initialisation (dashed) and trained
  (solid), one line per variant.

A variant is drawn in its method's colour and marker; a method's controls (variants with other
options) are told apart from it by the dash.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..report.diversity import is_floor
from ._style import label, method_style, new_figure, save_figure

#: Heatmap rows: (matrix key, caption, colour limits or None for one shared scale).
HEATMAPS = (
    ("disagreement", "disagreement", None),
    ("kl", "KL(p_i || p_j) (nats)", None),
    ("cka_penultimate", "CKA, penultimate", (0.0, 1.0)),
    ("cka_mid", "CKA, mid layer", (0.0, 1.0)),
    ("weight_similarity", "weight cosine (trained)", (0.0, 1.0)),
)
#: Line styles of a method's controls, in the order the study lists them.
CONTROL_DASHES = ((0, (1, 1)), (0, (4, 2)), (0, (3, 1, 1, 1)), (0, (6, 2, 1, 2)))


def draw_all(results: dict, folder: str | os.PathLike) -> list[Path]:
    """Every figure of the study into ``folder``; returns their paths."""
    folder = Path(folder)
    variants = results["variants"]
    paths = [diversity_heatmaps(
        {entry["label"]: {key: np.asarray(entry["matrices"][key], dtype=float)
                          for key, _, _ in HEATMAPS} for entry in variants.values()},
        folder / "diversity_heatmaps.png",
        rows=list(HEATMAPS),
        title=f"Member similarity on the {results['dataset']} test set (seed 0)")]
    paths.append(shift_lines(results, folder / "diversity_shift.png"))
    paths.append(layer_lines(results, folder / "diversity_layers.png"))
    return paths


def _styles(variants: dict) -> dict[str, dict]:
    """Per variant key: its method's colour and marker, solid for the method itself and the
    next of :data:`CONTROL_DASHES` for each of its controls."""
    styles, controls = {}, {}
    for key, entry in variants.items():
        colour, marker = method_style(entry["method"])
        dash = "-"
        if entry["options"]:
            index = controls.get(entry["method"], 0)
            controls[entry["method"]] = index + 1
            dash = CONTROL_DASHES[index % len(CONTROL_DASHES)]
        styles[key] = {"color": colour, "marker": marker, "linestyle": dash}
    return styles


def diversity_heatmaps(
    matrices: dict[str, dict[str, np.ndarray]],
    path: str | os.PathLike,
    *,
    rows: Sequence[tuple[str, str, tuple[float, float] | None]],
    title: str = "",
) -> Path:
    """A grid of member x member heatmaps: one column per method, one row per measure.

    ``matrices[method][measure]`` is an (M, M) array; ``rows`` lists ``(measure, caption,
    (vmin, vmax) or None)``; ``None`` shares one scale across the row's methods. Each cell is
    annotated with its value.
    """
    methods = list(matrices)
    figure = new_figure(2.35 * len(methods) + 1.0, 2.3 * len(rows) + 0.4)
    axes = figure.subplots(len(rows), len(methods), squeeze=False)
    for row, (measure, caption, limits) in enumerate(rows):
        values = [np.asarray(matrices[m][measure], dtype=float) for m in methods]
        if limits is None:
            finite = np.concatenate([v[np.isfinite(v)].ravel() for v in values] or [[0.0]])
            limits = (0.0, float(finite.max()) if finite.size else 1.0)
            if limits[1] <= limits[0]:
                limits = (limits[0], limits[0] + 1e-9)
        image = None
        for column, (method, matrix) in enumerate(zip(methods, values, strict=True)):
            axis = axes[row][column]
            image = axis.imshow(matrix, cmap="magma", vmin=limits[0], vmax=limits[1])
            size = matrix.shape[0]
            if size <= 8:
                for i in range(size):
                    for j in range(size):
                        shade = (matrix[i, j] - limits[0]) / (limits[1] - limits[0])
                        colour = "black" if math.isfinite(shade) and shade > 0.6 else "white"
                        axis.text(j, i, _short(matrix[i, j]), ha="center", va="center",
                                  fontsize=7, color=colour)
            axis.set_xticks(range(size), [str(i + 1) for i in range(size)], fontsize=7)
            axis.set_yticks(range(size), [str(i + 1) for i in range(size)], fontsize=7)
            if row == 0:
                axis.set_title(label(method), fontsize=10)
            if column == 0:
                axis.set_ylabel(caption, fontsize=9)
        figure.colorbar(image, ax=list(axes[row]), shrink=0.9, pad=0.01)
    if title:
        figure.suptitle(title, fontsize=11)
    return save_figure(figure, path)


def shift_lines(results: dict, path: str | os.PathLike) -> Path:
    """Disagreement and mutual information against severity (0 = clean), one line each."""
    styles = _styles(results["variants"])
    figure = new_figure(9.0, 3.4)
    axes = figure.subplots(1, 2)
    for axis, (key, caption) in zip(axes, (("disagreement", "pairwise disagreement"),
                                           ("mutual_information", "mutual information (nats)")),
                                    strict=True):
        for variant, entry in results["variants"].items():
            names = ["clean"] + [n for n in entry["sets"] if n.startswith("severity_")]
            levels = [0] + [int(n.split("_")[1]) for n in names[1:]]
            means = [entry["sets"][n][key]["mean"] for n in names]
            stds = [entry["sets"][n][key]["std"] for n in names]
            axis.errorbar(levels, means, yerr=stds, capsize=2, markersize=4,
                          label=entry["label"], **styles[variant])
        axis.set_xlabel("corruption severity (0 = clean)")
        axis.set_xticks(sorted({0, *[int(n.split("_")[1]) for n in
                                     next(iter(results["variants"].values()))["sets"]
                                     if n.startswith("severity_")]}))
        axis.set_title(caption, fontsize=10)
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    figure.suptitle(f"Members under shift on {results['dataset']} (mean ± std over "
                    f"{len(results['seeds'])} seeds)", fontsize=11)
    return save_figure(figure, path)


def layer_lines(results: dict, path: str | os.PathLike) -> Path:
    """Per-layer weight cosine: initialisation dashed, trained solid, one colour per variant."""
    figure = new_figure(8.5, 3.6)
    axis = figure.subplots()
    layers = None
    styles = _styles(results["variants"])
    for variant, entry in results["variants"].items():
        if is_floor(entry):  # 1 everywhere, by definition
            continue
        weights = entry["weights"]
        layers = list(weights["init"]["layers"])
        x = np.arange(len(layers))
        style = styles[variant]
        for stage in ("init", "trained"):
            values = [weights[stage]["layers"][n]["mean"] for n in layers]
            values = [np.nan if v is None else v for v in values]
            trained = stage == "trained"
            axis.plot(x, values, color=style["color"], marker=style["marker"], markersize=4,
                      linestyle=style["linestyle"] if trained else "--",
                      alpha=1.0 if trained else 0.5,
                      label=entry["label"] if trained else "_nolegend_")
    if layers:
        axis.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=7)
    axis.set_ylabel("weight cosine between members")
    axis.set_ylim(-0.05, 1.05)
    axis.grid(alpha=0.3)
    figure.legend(loc="outside right center", fontsize=7, frameon=False)
    figure.suptitle("Parameter space per layer: initialisation (dashed) and trained",
                    fontsize=11)
    return save_figure(figure, path)


def _short(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"
