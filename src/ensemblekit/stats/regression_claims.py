"""The regression benchmark's orderings (:data:`~ensemblekit.methods.claims.REGRESSION_CLAIMS`),
each tested by a paired bootstrap over seeds and test inputs, as the classification
benchmark's are (:func:`~ensemblekit.stats.claims.orderings`; records in the same layout).
"""

from __future__ import annotations

import torch

from ..methods.claims import REGRESSION_CLAIMS, ClaimSet
from .bootstrap import DEFAULT_N_BOOT, draw_resamples
from .claims import BOOTSTRAP_SEED, ClaimTable, tested_orderings
from .weighted_regression import REGRESSION_CLAIM_METRICS


def regression_orderings(predictions: dict, *, n_boot: int | None = None,
                         seed: int = BOOTSTRAP_SEED, level: float = 0.95,
                         claims: ClaimSet = REGRESSION_CLAIMS) -> list[dict]:
    """``claims`` tested on ``{(method, seed): per-input values}`` (the dicts of
    :func:`ensemblekit.metrics.regression_per_sample` on one test set, in original units):
    RMSE, NLL, CRPS and the calibration error, every method resampled with the same draws of
    seeds and inputs. Methods are compared on the seeds they all ran."""
    methods = list(dict.fromkeys(method for method, _ in predictions))
    seeds = sorted({s for _, s in predictions})
    runs = {m: [predictions[(m, s)] for s in seeds] for m in methods
            if all((m, s) in predictions for s in seeds)}
    table = ClaimTable(runs, level=level)
    if runs:
        inputs = len(next(iter(runs.values()))[0]["nll"])
        labels = torch.zeros(inputs)  # unused by the regression metrics: only their count
        draws = draw_resamples(inputs, len(seeds), n_boot=n_boot or DEFAULT_N_BOOT, seed=seed)
        for name, metric in REGRESSION_CLAIM_METRICS.items():
            table.add(name, metric, labels, draws, {m: group for m, group in runs.items()})
    return tested_orderings(table, claims)
