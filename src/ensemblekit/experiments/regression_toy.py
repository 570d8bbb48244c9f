"""Masksembles paper, Example 1, for regression: from one model to an ensemble on 1-D problems.

One model per panel -- single model, MC-Dropout, Masksembles at increasing scale, Deep
Ensemble (the panels of :func:`~ensemblekit.experiments.toy.toy_panels`) -- trained on the same
points of each 1-D toy (the cubic; Foong et al.'s "in-between" gap), each drawn as its
predictive mean +- 2 sigma over a range reaching beyond the data, the epistemic part (variance
of the members' means) and the aleatoric part (mean of the members' variances) in two rows of
their own, the total as a dashed outline in both. A single model has no epistemic part; the
further along the spectrum, the more it grows away from the data (and in the gap).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import plots
from .._validation import check_float, check_int, check_seed
from ..atomic import atomic_write_text
from ..data import REGRESSION_TOYS, make_regression_toy
from ..metrics import evaluate_regression, moment_match
from .checks import as_list
from .config import Settings
from .pipeline import build, check_batch_size, train
from .regression_protocol import load_regression_data, predict_gaussian
from .runs import Log
from .toy import toy_panels


@dataclass
class RegressionToySettings(Settings):
    """``ensemblekit toy --task regression``: one row of panels per problem of ``datasets``
    (the 1-D regression toys), one panel per method of the spectrum and per Masksembles scale
    of ``scales``; ``points``: the plotting grid's size."""

    dataset: str = "toy_cubic"
    datasets: list[str] = field(default_factory=lambda: ["toy_cubic", "toy_in_between"])
    scales: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0])
    seed: int = 0
    points: int = 300
    validation_fraction: float | None = 0.0  # nothing is fitted on validation here

    command = "toy"
    task = "regression"
    #: What a run writes under ``out``: the figure and the numbers.
    figure_file = "toy_regression.png"
    json_file = "toy_regression.json"

    def validate(self) -> None:
        self.datasets = as_list(self.datasets)
        if not self.datasets or any(name not in REGRESSION_TOYS for name in self.datasets):
            raise ValueError(f"datasets must name 1-D regression toys "
                             f"({', '.join(REGRESSION_TOYS)}), got {self.datasets!r}")
        self.dataset = self.datasets[0]
        super().validate()
        self.scales = sorted({check_float("scale", s, minimum=1.0) for s in as_list(self.scales)})
        self.seed = check_seed(self.seed)
        self.points = check_int("points", self.points, minimum=10)


def run_regression_toy(settings: RegressionToySettings, *, log: Log = print) -> dict:
    """Train every panel's model on each toy, draw ``<out>/toy_regression.png``, write
    ``<out>/toy_regression.json``: per toy and panel the test RMSE and NLL (original units) and
    the mean epistemic and aleatoric sigma inside and outside the training ranges (and the
    epistemic sigma in the gap between them, for a toy with a gap)."""
    out = Path(settings.out)
    panels = toy_panels(settings)
    for method, options, _ in panels:
        check_batch_size(settings, build(settings, method, seed=settings.seed, **options))
    rows, summary = [], {}
    for name in settings.datasets:
        own = dataclasses.replace(settings, dataset=name)
        row, summary[name] = _toy_row(own, panels, log)
        rows.append(row)
    figure = plots.regression_bands(
        rows, [title for *_, title in panels], out / settings.figure_file,
        title=f"Predictive mean ± 2σ from one model to an ensemble ({settings.members} members)")
    result = {"datasets": settings.datasets, "members": settings.members, "seed": settings.seed,
              "epochs": settings.epochs, "panels": summary, "figure": figure.name}
    atomic_write_text(out / settings.json_file, json.dumps(result, indent=1))
    return result


def _toy_row(settings: RegressionToySettings, panels, log: Log) -> tuple[dict, list[dict]]:
    """One toy: every panel's model trained, its bands on the grid and its summary."""
    toy = REGRESSION_TOYS[settings.dataset]
    data = load_regression_data(settings)
    units = data.standardization
    low, high = toy.test_range
    grid = torch.linspace(low, high, settings.points, dtype=torch.float64)[:, None]
    inside = torch.zeros(settings.points, dtype=torch.bool)
    for start, stop in toy.train_ranges:
        inside |= (grid[:, 0] >= start) & (grid[:, 0] <= stop)
    # the gap between training ranges (the in-between toy's), where no data was either
    gap = ~inside & (grid[:, 0] > min(r[0] for r in toy.train_ranges)) \
        & (grid[:, 0] < max(r[1] for r in toy.train_ranges))
    train_x, train_y = make_regression_toy(settings.dataset, "train")
    row = {"name": settings.dataset, "description": toy.description, "x": grid[:, 0].tolist(),
           "truth_mean": toy.mean(grid[:, 0].numpy()).tolist(),
           "truth_std": toy.noise_std(grid[:, 0].numpy()).tolist(),
           "train_x": train_x[:, 0].tolist(), "train_y": train_y[:, 0].tolist(), "panels": []}
    summary = []
    for method, options, title in panels:
        model = build(settings, method, seed=settings.seed, **options)
        training = train(settings, model, data, seed=settings.seed)
        members = units.to_original(*predict_gaussian(model, units.inputs(grid),
                                                      seed=settings.seed))
        moments = moment_match(*members)
        test = units.to_original(*predict_gaussian(model, data.test[0], seed=settings.seed))
        metrics = evaluate_regression(*test, units.original_targets(data.test[1]))
        epistemic, aleatoric = moments.epistemic[:, 0].sqrt(), moments.aleatoric[:, 0].sqrt()
        row["panels"].append({"mean": moments.mean[:, 0].tolist(),
                              "epistemic_std": epistemic.tolist(),
                              "aleatoric_std": aleatoric.tolist()})
        entry = {"method": method, **options, "title": title, "test_rmse": metrics["rmse"],
                 "test_nll": metrics["nll"],
                 "epistemic_std_inside": epistemic[inside].mean().item(),
                 "epistemic_std_outside": epistemic[~inside].mean().item(),
                 "epistemic_std_gap": epistemic[gap].mean().item() if gap.any() else None,
                 "aleatoric_std_inside": aleatoric[inside].mean().item(),
                 "train_seconds": training["seconds"]}
        summary.append(entry)
        log(f"{settings.dataset} {title}: test RMSE {entry['test_rmse']:.3g}, NLL "
            f"{entry['test_nll']:.3f}; epistemic sigma {entry['epistemic_std_inside']:.3g} on "
            f"the data, {entry['epistemic_std_outside']:.3g} away from it")
    return row, summary
