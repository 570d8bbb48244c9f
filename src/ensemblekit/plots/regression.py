"""Figures of the regression benchmark (``ensemblekit benchmark --task regression``), from its
``results.json`` content: quantile calibration curves, sparsification curves against the
oracle, RMSE against predicted sigma, and the verdicts' bootstrap intervals.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..methods.claims import REGRESSION_METRICS
from ..report.regression import CLAIM_LABELS
from ..report.regression_md import regression_figure_names
from ._style import label, method_style, new_figure, save_figure
from .benchmark import verdict_intervals


def regression_figures(folder: str | os.PathLike, results: dict) -> list[Path]:
    """Every regression figure the results allow; returns the paths written."""
    folder = Path(folder)
    drawn = regression_figure_names(results)
    written = [calibration_curves(results, folder / "calibration_curves.png"),
               sparsification_curves(results, folder / "sparsification.png"),
               sigma_vs_error(results, folder / "sigma_vs_error.png")]
    if "verdicts.png" in drawn:
        written.append(verdict_intervals(results["orderings"], folder / "verdicts.png",
                                         metrics=REGRESSION_METRICS,
                                         metric_labels=CLAIM_LABELS))
    return written


def calibration_curves(results: dict, path: str | os.PathLike) -> Path:
    """Observed against expected quantile level per method (the diagonal: calibrated; below
    it: the intervals are too narrow in the lower half, too wide above, and so on)."""
    figure = new_figure(4.6, 4.4)
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle="--", label="calibrated")
    for method, entry in results["methods"].items():
        colour, marker = method_style(method)
        curve = entry["curves"]["calibration"]
        axis.plot(curve["expected"], curve["observed"], color=colour, linewidth=1.6,
                  label=label(method))
    axis.set_ylim(0, 1)
    return _finish(figure, axis, path, "expected quantile level p",
                   "observed fraction of targets with F(y) <= p",
                   f"Quantile calibration, {results['dataset']} test")


def sparsification_curves(results: dict, path: str | os.PathLike) -> Path:
    """Each method's RMSE of the kept inputs (normalised to 1 at none removed) as the inputs
    with the largest sigma are removed (solid), beside its oracle's (dotted, removal by true
    error): the closer the two, the better sigma ranks the errors (AUSE is the area between)."""
    figure = new_figure(5.2, 4.2)
    axis = figure.subplots()
    for method, entry in results["methods"].items():
        colour, _ = method_style(method)
        curve = entry["curves"]["sparsification"]
        ause = entry["test"]["ause"]["mean"]
        axis.plot(curve["fraction"], curve["model"], color=colour, linewidth=1.6,
                  label=f"{label(method)} (AUSE {ause:.3f})")
        axis.plot(curve["fraction"], curve["oracle"], color=colour, linewidth=1.0,
                  linestyle=":")
    return _finish(figure, axis, path,
                   "fraction of inputs removed (largest sigma first; dotted: the oracle)",
                   "RMSE of the rest / RMSE of all",
                   f"Sparsification, {results['dataset']} test")


def sigma_vs_error(results: dict, path: str | os.PathLike) -> Path:
    """RMSE against the root mean predicted variance, inputs binned by predicted sigma (ENCE's
    equal-mass bins), one point per bin and run, a line through each method's mean bins: on
    the diagonal sigma is right; above it, too small."""
    figure = new_figure(5.0, 4.6)
    axis = figure.subplots()
    top = 0.0
    for method, entry in results["methods"].items():
        colour, marker = method_style(method)
        runs = entry["sigma_error"]
        for run in runs:
            axis.scatter(run["rmv"], run["rmse"], color=colour, marker=marker, s=14, alpha=0.45)
            top = max(top, *run["rmv"], *run["rmse"])
        if len({len(run["rmv"]) for run in runs}) == 1:
            axis.plot(np.mean([run["rmv"] for run in runs], axis=0),
                      np.mean([run["rmse"] for run in runs], axis=0), color=colour,
                      linewidth=1.4, label=label(method))
    axis.plot([0, top], [0, top], color="black", linewidth=0.8, linestyle="--")
    axis.set_xlabel("predicted sigma (root mean variance in the bin)")
    axis.set_ylabel("RMSE in the bin")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, frameon=False)
    axis.set_title(f"Sigma against error, {results['dataset']} test", fontsize=10)
    return save_figure(figure, path)


def _finish(figure, axis, path, xlabel: str, ylabel: str, title: str) -> Path:
    """Labels, [0, 1] on x, a grid, the legend and the title; then the PNG."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_xlim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, frameon=False)
    axis.set_title(title, fontsize=10)
    return save_figure(figure, path)
