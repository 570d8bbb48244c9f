"""Benchmark and toy figures: the toy maps as a grid legible at 100% zoom, the severity and
risk-coverage figures drawn from results (one seed: no error bars)."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from ensemblekit import plots, report


def _size(path):
    height, width = imread(path).shape[:2]
    return width, height


def test_toy_maps_are_a_grid_not_a_strip(tmp_path):
    xs, ys = np.linspace(-2, 3, 30), np.linspace(-1.5, 2, 20)
    maps = [np.random.default_rng(i).random((20, 30)) for i in range(7)]
    points = np.random.default_rng(0).normal(size=(40, 2))
    labels = np.arange(40) % 2
    path = plots.entropy_maps(maps, [f"panel {i}" for i in range(7)], xs, ys, points, labels,
                              tmp_path / "toy.png", max_entropy=np.log(2), title="toy")
    width, height = _size(path)
    # 7 panels in 2 rows of 4 (was one 1908 x 236 strip): each panel about 3 inches wide
    assert width <= 1600 and height >= 450 and width / height < 3.5


def _results(seeds):
    methods = {}
    for index, method in enumerate(("single", "deep_ensemble")):
        value = {"mean": 0.1 * (index + 1), "std": 0.0 if seeds == 1 else 0.01}
        methods[method] = {
            "test": {key: value for key in ("accuracy", "ece", "aurc")},
            "shift": {s: {key: value for key in report.SHIFT_METRICS} for s in ("1", "5")},
            "risk_coverage": {"coverage": [0.5, 1.0], "risk": [0.01 * index, 0.1]},
        }
    return {"dataset": "digits", "seeds": list(range(seeds)), "methods": methods}


def test_severity_and_risk_coverage_figures_draw_for_one_and_several_seeds(tmp_path):
    for seeds in (1, 3):
        results = _results(seeds)
        for name, draw in (("shift", plots.shift_vs_severity), ("risk", plots.risk_coverage),
                           ("ece", plots.ece_vs_severity)):
            path = draw(results, tmp_path / f"{name}-{seeds}.png")
            width, height = _size(path)
            assert width > height > 200
