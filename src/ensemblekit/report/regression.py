"""Regression benchmark results: records over seeds (and UCI splits) into the ``results.json``
content, ``results.csv`` and the table the CLI prints.

Input: one record per (method, split, seed) run, as
:func:`ensemblekit.experiments.regression_benchmark.run_one` writes it, and the protocol.
Per method, every scalar test metric as ``{"mean", "std"}`` over seeds (sample std, n - 1) --
or, over UCI splits, ``{"mean", "std", "se"}`` of the splits' means over seeds, ``se`` the
standard error ``std / sqrt(splits)`` that the published tables print. Beside them: the
validation metrics, the training fit, variance scaling ("+VS": the runs whose scale is
identified, and how many are), the conformal coverage beside the nominal one, and the curves
averaged over runs. The verdicts on the claims (:func:`ensemblekit.stats.regression_orderings`)
come from a paired bootstrap on the runs' per-input values, never written in advance.
"""

from __future__ import annotations

import csv
import io
import math

import torch

from ..stats import BOOTSTRAP_SEED, DEFAULT_N_BOOT, regression_orderings
from ._format import average, mean_std, pm
from .labels import method_label

#: The test metrics of the tables, in order, and how the report names them.
REGRESSION_TABLE = {"rmse": "RMSE", "nll": "NLL", "crps": "CRPS", "picp_95": "PICP 95%",
                    "mpiw_95": "MPIW 95%", "calibration_error": "cal. error", "ence": "ENCE",
                    "ause": "AUSE", "spearman": "Spearman"}
#: Every scalar test metric kept per method (the table's and the rest).
REGRESSION_METRICS = (*REGRESSION_TABLE, "mae", "nll_gaussian", "crps_gaussian", "picp_68",
                      "mpiw_68", "aleatoric", "epistemic")
#: How the claims' metrics are named.
CLAIM_LABELS = {"rmse": "RMSE", "nll": "NLL", "crps": "CRPS",
                "calibration_error": "calibration error"}
#: The figures and their captions, in the report's order.
REGRESSION_FIGURES = (
    ("calibration_curves.png", "Quantile calibration curves on the test set (mean over runs)"),
    ("sparsification.png", "Sparsification curves (RMSE of the kept inputs) against the "
                           "oracle's (mean over runs)"),
    ("sigma_vs_error.png", "RMSE against the root mean predicted variance, inputs binned by "
                           "predicted sigma (every run)"),
    ("verdicts.png", "The orderings' differences with their 95% bootstrap intervals"),
)


def regression_results(records: list[dict], protocol: dict, *,
                       predictions: dict | None = None) -> dict:
    """Results from the runs' records (module docstring): the ``results.json`` content.

    ``predictions``: ``{(method, seed): per-input values}`` of one test set (the first
    split's) for the verdicts; None: no verdicts.
    """
    methods = list(dict.fromkeys(r["method"] for r in records))
    seeds = sorted({r["seed"] for r in records})
    splits = protocol.get("splits")
    results = {"dataset": protocol["dataset"], "task": "regression", "seeds": seeds,
               "splits": splits, "protocol": protocol, "methods": {}}
    for method in methods:
        runs = [r for r in records if r["method"] == method]
        entry = {"params": runs[0]["params"], "num_members": runs[0]["num_members"],
                 "runs": len(runs),
                 "test": _over_runs(runs, "test", REGRESSION_METRICS, splits),
                 "train": {"loss": mean_std([r["train"]["loss"] for r in runs]),
                           "epochs": runs[0]["train"]["epochs"],
                           "seconds": mean_std([r["train"]["seconds"] for r in runs])},
                 "curves": mean_curves([r["curves"] for r in runs]),
                 "sigma_error": [r["curves"]["sigma_error"] for r in runs]}
        if all("validation" in r for r in runs):
            entry["validation"] = _over_runs(runs, "validation", list(runs[0]["validation"]),
                                             None)
            entry["variance_scaled"] = variance_scaled_summary(runs, splits)
            entry["conformal"] = conformal_summary([r["conformal"] for r in runs])
        results["methods"][method] = entry
    if predictions:
        results["orderings"] = regression_orderings(predictions)
        results["bootstrap"] = {
            "n_boot": DEFAULT_N_BOOT, "seed": BOOTSTRAP_SEED, "level": 0.95,
            "split": None if not splits else splits[0],
            "resampled": "seeds and test inputs, with the same draws for every method"}
    return results


def _over_runs(runs: list[dict], part: str, keys, splits) -> dict:
    """``{metric: {"mean", "std"}}`` over seeds; with UCI ``splits`` first the mean over seeds
    within each split, then ``{"mean", "std", "se"}`` over the splits."""
    keys = [k for k in keys if all(k in r[part] for r in runs)]
    if not splits:
        return {k: mean_std([r[part][k] for r in runs]) for k in keys}
    by_split = {}
    for r in runs:
        by_split.setdefault(r["split"], []).append(r)
    summary = {}
    for k in keys:
        values = [_mean_or_none([r[part][k] for r in group]) for group in by_split.values()]
        value = mean_std(values)
        value["se"] = None if value["std"] is None else value["std"] / math.sqrt(len(values))
        summary[k] = value
    return summary


def _mean_or_none(values):
    return None if any(v is None for v in values) else average(values)


def variance_scaled_summary(runs: list[dict], splits) -> dict:
    """"+VS" of one method: the scales, how many runs identified one, why the others did not,
    and the test metrics over the identified runs (None when no run identified a scale)."""
    fits = [r["variance_scaled"]["calibration"] for r in runs]
    identified = [r for r in runs if r["variance_scaled"]["calibration"]["fitted"]]
    return {
        "identified": len(identified), "runs": len(runs),
        "scale": mean_std([f["scale"] for f in fits if f["fitted"]]) if identified else None,
        "reasons": sorted({f["reason"] for f in fits if not f["fitted"]}),
        "validation_nll": {side: mean_std([f["validation_nll"][side] for f in fits])
                           for side in ("before", "after")},
        "test": (_over_runs([{**r, "vs": r["variance_scaled"]["test"]} for r in identified],
                            "vs", REGRESSION_METRICS, splits) if identified else None),
    }


def conformal_summary(conformal: list[dict]) -> dict:
    """The conformal intervals' coverage (and the Gaussian interval's), width and quantile
    over runs, beside the nominal level."""
    done = [c for c in conformal if c.get("coverage") is not None]
    summary = {"nominal": conformal[0]["nominal"], "alpha": conformal[0]["alpha"],
               "runs": len(conformal), "fitted": len(done),
               "reasons": sorted({c["reason"] for c in conformal if "reason" in c})}
    if done:
        for key in ("coverage", "gaussian_coverage", "mpiw"):
            summary[key] = mean_std([c[key] for c in done])
        summary["quantile"] = mean_std([average(c["quantile"]) for c in done])
    return summary


def mean_curves(curves: list[dict]) -> dict:
    """The calibration and sparsification curves averaged over runs, point by point (every
    run of one dataset has the same levels; the sparsification fractions of equal test sets
    agree, else each run's curve is resampled onto the first run's fractions)."""
    levels = curves[0]["calibration_curve"]["expected"]
    observed = torch.tensor([c["calibration_curve"]["observed"] for c in curves]).mean(0)
    fractions = torch.tensor(curves[0]["sparsification"]["fraction"], dtype=torch.float64)
    model, oracle = [], []
    for c in curves:
        own = torch.tensor(c["sparsification"]["fraction"], dtype=torch.float64)
        model.append(_interpolate(fractions, own, c["sparsification"]["model"]))
        oracle.append(_interpolate(fractions, own, c["sparsification"]["oracle"]))
    return {"calibration": {"expected": levels, "observed": observed.tolist()},
            "sparsification": {"fraction": fractions.tolist(),
                               "model": torch.stack(model).mean(0).tolist(),
                               "oracle": torch.stack(oracle).mean(0).tolist()}}


def _interpolate(at: torch.Tensor, xs: torch.Tensor, ys) -> torch.Tensor:
    """Piecewise-linear ``ys(xs)`` at ``at`` (float64); equal grids return ``ys`` as is."""
    ys = torch.tensor(ys, dtype=torch.float64)
    if xs.shape == at.shape and torch.equal(xs, at):
        return ys
    index = torch.searchsorted(xs, at).clamp(1, len(xs) - 1)
    x0, x1, y0, y1 = xs[index - 1], xs[index], ys[index - 1], ys[index]
    t = ((at - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return y0 + t * (y1 - y0)


def spread_of(results: dict):
    """How a value is printed: ``mean ± se`` over UCI splits, else ``mean ± std`` over seeds
    (the mean alone for one seed)."""
    over_splits = bool(results.get("splits"))
    alone = len(results["seeds"]) == 1 and not over_splits

    def text(value: dict | None) -> str:
        if value is None:
            return "n/a"
        if over_splits:
            return pm({"mean": value["mean"], "std": value.get("se")}, alone=alone)
        return pm(value, alone=alone)

    return text


def regression_table(results: dict) -> list[str]:
    """Markdown lines: the test metrics per method, each "+VS" twin beside it (over the runs
    whose scale was identified, their count in the row's name)."""
    text = spread_of(results)
    lines = ["| method | " + " | ".join(REGRESSION_TABLE.values()) + " |",
             "|---|" + "---:|" * len(REGRESSION_TABLE)]
    for method, entry in results["methods"].items():
        lines.append(f"| {method_label(method)} | "
                     + " | ".join(text(entry["test"].get(k)) for k in REGRESSION_TABLE) + " |")
        scaled = entry.get("variance_scaled")
        if scaled and scaled["test"] is not None:
            name = f"{method_label(method)} +VS ({scaled['identified']}/{scaled['runs']})"
            lines.append(f"| {name} | "
                         + " | ".join(text(scaled["test"].get(k)) for k in REGRESSION_TABLE)
                         + " |")
    return lines


def regression_summary_table(results: dict) -> str:
    """The CLI's table: the markdown table of :func:`regression_table` as plain text."""
    return "\n".join(regression_table(results))


def regression_csv(results: dict) -> str:
    """One row per method (and per "+VS" twin): every kept test metric's mean, std (and se
    over UCI splits)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [f"{k}_{part}" for k in REGRESSION_METRICS for part in ("mean", "std", "se")]
    writer.writerow(["method", "variant", "runs", *columns])
    for method, entry in results["methods"].items():
        rows = [("raw", entry["runs"], entry["test"])]
        scaled = entry.get("variance_scaled")
        if scaled and scaled["test"] is not None:
            rows.append(("+VS", scaled["identified"], scaled["test"]))
        for variant, runs, values in rows:
            cells = []
            for key in REGRESSION_METRICS:
                value = values.get(key, {})
                cells += [_cell(value.get(part)) for part in ("mean", "std", "se")]
            writer.writerow([method, variant, runs, *cells])
    return buffer.getvalue()


def _cell(value) -> str:
    return "" if value is None else repr(float(value))
