"""The Masksembles transition: metrics over a grid of scale x number of masks n.

Scale 1 gives n identical full masks (a single model); a large scale with few masks gives
nearly disjoint masks (an ensemble of thin independent models); many masks at a moderate
scale behave like dropout. The sweep trains Masksembles at every (n, scale) of the grid and the
``references`` (other methods, ``members`` members) under the same recipe and protocol, and
plots accuracy, NLL, ECE under shift, OOD AUROC and member disagreement against scale.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..plots import sweep_plot
from ..report import mean_std
from ..report.sweep import sweep_markdown
from .pipeline import Log, build, check_batch_size, evaluate, load_experiment_data, train
from .settings import SweepSettings

#: (key, caption) of each plotted metric, in panel order.
SWEEP_METRICS = (
    ("accuracy", "test accuracy"),
    ("nll", "test NLL"),
    ("shift_ece", "ECE under shift"),
    ("ood_auroc", "OOD AUROC (entropy)"),
    ("disagreement", "member disagreement"),
)


def run_metrics(record: dict) -> dict:
    """The sweep's scalar metrics from one evaluation record (see ``pipeline.evaluate``)."""
    metrics = {"accuracy": record["test"]["accuracy"], "nll": record["test"]["nll"],
               "ece": record["test"]["ece"],
               "disagreement": record["test"].get("disagreement")}
    if "shift_mean" in record:
        values = [m["ece"] for m in record["shift_mean"].values()]
        metrics["shift_ece"] = sum(values) / len(values)
        values = [m["accuracy"] for m in record["shift_mean"].values()]
        metrics["shift_accuracy"] = sum(values) / len(values)
    if "ood" in record:
        metrics["ood_auroc"] = record["ood"]["entropy"]["auroc"]
    return {key: value for key, value in metrics.items() if value is not None}


def run_sweep(settings: SweepSettings, *, log: Log = print) -> dict:
    """Train and evaluate the grid and the references; write ``sweep.json``, ``sweep.md`` and
    ``sweep.png`` into ``settings.out``; return the ``sweep.json`` content."""
    out = Path(settings.out)
    grid = [(n, scale) for n in settings.ns for scale in settings.scales]
    for n, scale in grid:
        check_batch_size(settings, build(settings, "masksembles", seed=0, n=n, scale=scale))
    for method in settings.references:
        check_batch_size(settings, build(settings, method, seed=0))
    data = load_experiment_data(settings, ood=settings.ood, corruptions=settings.corruptions,
                                severities=settings.severities, log=log)

    def measure(method: str, **options) -> dict:
        runs = []
        for seed in range(settings.seeds):
            model = build(settings, method, seed=seed, **options)
            train(settings, model, data, seed=seed)
            runs.append(run_metrics(evaluate(model, data, seed=seed)))
        return {key: mean_std([r[key] for r in runs]) for key in runs[0]}

    sweep: dict = {"masksembles": {}, "references": {}}
    for n, scale in grid:
        metrics = measure("masksembles", n=n, scale=scale)
        sweep["masksembles"].setdefault(str(n), {})[f"{scale:g}"] = metrics
        log(f"masksembles n={n} scale={scale:g}: {_brief(metrics)}")
    for method in settings.references:
        sweep["references"][method] = measure(method)
        log(f"{method}: {_brief(sweep['references'][method])}")
    available = [(key, caption) for key, caption in SWEEP_METRICS
                 if key in next(iter(sweep["masksembles"][str(settings.ns[0])].values()))]
    result = {
        "dataset": settings.dataset,
        "seeds": list(range(settings.seeds)),
        "protocol": {"backbone": settings.backbone, "width": settings.width,
                     "members_of_references": settings.members,
                     "mc_dropout_p": settings.dropout, "epochs": settings.epochs,
                     "train": settings.train, "corruptions": settings.corruptions,
                     "severities": settings.severities, "ood": data.ood_name,
                     "ood_status": data.ood_status},
        **sweep,
    }
    atomic_write_text(out / "sweep.json", json.dumps(result, indent=1))
    atomic_write_text(out / "sweep.md", sweep_markdown(result, available, grid="masksembles"))
    sweep_plot(sweep, out / "sweep.png", metrics=available, grid="masksembles",
               title=f"Masksembles from one model to an ensemble on {settings.dataset}")
    return result


def _brief(metrics: dict) -> str:
    return ", ".join(f"{key} {value['mean']:.4f}" for key, value in metrics.items())
