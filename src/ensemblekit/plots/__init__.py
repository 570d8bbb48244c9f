"""Figures: plain dicts in (the experiments' results), PNG files out; never imports
experiments. One module per experiment's figures (:mod:`.benchmark`, :mod:`.regression`,
:mod:`.regression_toy`, :mod:`.toy`, :mod:`.diversity`, :mod:`.sweep`, :mod:`.tune`) on the
shared canvas, colours, markers and labels of :mod:`._style` (every method keeps its registry
colour and marker across figures).
"""

from ._style import label, method_style, new_figure, save_figure
from .benchmark import (
    benchmark_figures,
    ece_vs_severity,
    ood_histograms,
    reliability_diagrams,
    risk_coverage,
    shift_vs_severity,
    verdict_intervals,
)
from .diversity import HEATMAPS, diversity_heatmaps
from .regression import (
    calibration_curves,
    regression_figures,
    sigma_vs_error,
    sparsification_curves,
)
from .regression_toy import regression_bands
from .sweep import sweep_plot
from .toy import entropy_maps
from .tune import pareto_figure

__all__ = [
    "HEATMAPS",
    "benchmark_figures",
    "calibration_curves",
    "diversity_heatmaps",
    "ece_vs_severity",
    "entropy_maps",
    "label",
    "method_style",
    "new_figure",
    "ood_histograms",
    "pareto_figure",
    "regression_bands",
    "regression_figures",
    "reliability_diagrams",
    "risk_coverage",
    "save_figure",
    "shift_vs_severity",
    "sigma_vs_error",
    "sparsification_curves",
    "sweep_plot",
    "verdict_intervals",
]
