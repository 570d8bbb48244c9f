"""Figures of the member-similarity study (``ensemblekit diversity``).

- ``diversity_heatmaps.png``: member x member matrices of the first seed, one column per
  variant (disagreement, KL, CKA of two representations, trained weight cosine);
- ``diversity_shift.png``: disagreement and mutual information against corruption severity
  (0 = clean), one line per variant, mean ± std over seeds;
- ``diversity_layers.png``: per-layer weight cosine at initialisation (dashed) and trained
  (solid), one line per variant.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .plots import diversity_heatmaps, method_style, new_figure, save_figure

#: Line styles of the BatchEnsemble controls, told apart from BatchEnsemble by the dash.
_CONTROL_DASHES = {"ones": (0, (1, 1)), "random_sign": (0, (4, 2))}


def draw_all(results: dict, runs: dict, folder: str | os.PathLike) -> list[Path]:
    """Every figure of the study into ``folder``; returns their paths."""
    from .experiments.diversity import HEATMAPS

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


def _style(entry: dict) -> dict:
    colour, marker = method_style(entry["method"])
    dash = _CONTROL_DASHES.get(entry["options"].get("init"), "-")
    return {"color": colour, "marker": marker, "linestyle": dash}


def shift_lines(results: dict, path: str | os.PathLike) -> Path:
    """Disagreement and mutual information against severity (0 = clean), one line each."""
    figure = new_figure(9.0, 3.4)
    axes = figure.subplots(1, 2)
    for axis, (key, caption) in zip(axes, (("disagreement", "pairwise disagreement"),
                                           ("mutual_information", "mutual information (nats)")),
                                    strict=True):
        for entry in results["variants"].values():
            names = ["clean"] + [n for n in entry["sets"] if n.startswith("severity_")]
            levels = [0] + [int(n.split("_")[1]) for n in names[1:]]
            means = [entry["sets"][n][key]["mean"] for n in names]
            stds = [entry["sets"][n][key]["std"] for n in names]
            axis.errorbar(levels, means, yerr=stds, capsize=2, markersize=4,
                          label=entry["label"], **_style(entry))
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
    for entry in results["variants"].values():
        if entry["method"] == "single":  # the floor: 1 everywhere, by definition
            continue
        weights = entry["weights"]
        layers = list(weights["init"]["layers"])
        x = np.arange(len(layers))
        style = _style(entry)
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
