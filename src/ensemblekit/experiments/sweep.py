"""The Masksembles transition: metrics over a grid of scale x number of masks n.

Scale 1 gives n identical full masks (a single model); a large scale with few masks gives
nearly disjoint masks (an ensemble of thin independent models); many masks at a moderate
scale behave like dropout. The sweep trains Masksembles at every (n, scale) of the grid and the
``references`` (other methods, ``members`` members) under the same recipe and protocol, and
plots accuracy, NLL, ECE under shift, OOD AUROC and member disagreement against scale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from .._validation import check_float, check_int
from ..atomic import atomic_write_text
from ..methods import method_entry
from ..plots import sweep_plot
from ..report import mean_std
from ..report.sweep import sweep_markdown
from .checks import as_list, check_methods, check_ood, check_shift
from .config import Settings
from .pipeline import build, check_batch_size, train
from .protocol import predict_splits, protocol_record
from .roles import spectrum_landmarks, spectrum_subject
from .runs import Log, ParallelRuns, Run, RunGrid
from .splits import load_experiment_data

#: (key, caption) of each plotted metric, in panel order.
SWEEP_METRICS = (
    ("accuracy", "test accuracy"),
    ("nll", "test NLL"),
    ("shift_ece", "ECE under shift"),
    ("ood_auroc", "OOD AUROC (entropy)"),
    ("disagreement", "member disagreement"),
)


def default_references() -> list[str]:
    """The other landmarks of the spectrum (:func:`~ensemblekit.experiments.roles.
    spectrum_landmarks` but the sweep's subject): single, MC-Dropout, Deep Ensembles."""
    subject = spectrum_subject()
    return [name for name in spectrum_landmarks() if name != subject]


@dataclass
class SweepSettings(ParallelRuns, Settings):
    """``ensemblekit sweep``: the spectrum subject (the first method with a ``spectrum_knob``:
    Masksembles) over a grid of ``scales`` (its knob) x ``ns`` (member counts), with
    ``references`` (other methods, ``members`` members) drawn as horizontal lines."""

    scales: list[float] = field(default_factory=lambda: [1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    ns: list[int] = field(default_factory=lambda: [2, 4, 8])
    references: list[str] = field(default_factory=default_references)
    seeds: int = 1
    corruptions: list[str] | str = field(default_factory=lambda: [
        "gaussian_noise", "defocus_blur", "fog", "contrast", "elastic_transform"])
    severities: list[int] = field(default_factory=lambda: [3, 5])
    ood: str = "auto"

    command = "sweep"

    def validate(self) -> None:
        super().validate()
        self.scales = sorted({check_float("scale", s, minimum=1.0) for s in as_list(self.scales)})
        self.ns = sorted({check_int("n", n, minimum=1) for n in as_list(self.ns)})
        if not self.scales or not self.ns:
            raise ValueError("scales and ns must each hold at least one value")
        self.references = check_methods(self.references, allow_empty=True)
        subject = spectrum_subject()
        if subject in self.references:
            raise ValueError(f"references lists the other methods; {subject} is the sweep "
                             "itself: remove it from references")
        self.seeds = check_int("seeds", self.seeds, minimum=1)
        self.corruptions, self.severities = check_shift(self.dataset, self.corruptions,
                                                        self.severities)
        self.ood = check_ood(self.dataset, self.ood)


def run_metrics(record: dict) -> dict:
    """The sweep's scalar metrics from one evaluation record (see
    :func:`~ensemblekit.experiments.protocol.protocol_record`)."""
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


def sweep_points(settings: SweepSettings) -> list[dict]:
    """``[{"name", "method", "options", "n", "scale"}]``: the subject at every (n, scale) of
    the grid (its ``members`` option and its spectrum knob), then each reference."""
    subject = spectrum_subject()
    entry = method_entry(subject)
    points = [{"name": f"{subject} n={n} scale={scale:g}", "method": subject,
               "options": {entry.global_keys["members"]: n, entry.spectrum_knob: scale},
               "n": n, "scale": scale}
              for n in settings.ns for scale in settings.scales]
    points += [{"name": method, "method": method, "options": {}} for method in settings.references]
    return points


def run_sweep(settings: SweepSettings, *, log: Log = print) -> dict:
    """Train and evaluate the grid and the references; write ``sweep.json``, ``sweep.md`` and
    ``sweep.png`` into ``settings.out``; return the ``sweep.json`` content."""
    out = Path(settings.out)
    subject = spectrum_subject()
    points = sweep_points(settings)
    for point in points:
        check_batch_size(settings, build(settings, point["method"], seed=0, **point["options"]))
    data = load_experiment_data(settings, ood=settings.ood, corruptions=settings.corruptions,
                                severities=settings.severities, log=log)

    grid = RunGrid([Run(key=(point["name"], seed), point=point, seed=seed,
                        name=f"{point['name']} seed {seed}")
                    for point in points for seed in range(settings.seeds)], log=log)
    done = grid.run(partial(measure_point, settings, data),
                    summary=lambda run, metrics: f"{run.name}: {_brief(metrics)}",
                    desc="sweep", jobs=settings.parallel_runs(len(grid.todo)))
    sweep: dict = {subject: {}, "references": {}}
    for point in points:
        runs = [done[(point["name"], seed)] for seed in range(settings.seeds)]
        metrics = {key: mean_std([r[key] for r in runs]) for key in runs[0]}
        if point["method"] == subject and point["options"]:
            sweep[subject].setdefault(str(point["n"]), {})[f"{point['scale']:g}"] = metrics
        else:
            sweep["references"][point["method"]] = metrics
    available = [(key, caption) for key, caption in SWEEP_METRICS
                 if key in next(iter(sweep[subject][str(settings.ns[0])].values()))]
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
    atomic_write_text(out / "sweep.md", sweep_markdown(result, available, grid=subject))
    sweep_plot(sweep, out / "sweep.png", metrics=available, grid=subject,
               title=f"{method_entry(subject).label} from one model to an ensemble on "
                     f"{settings.dataset}")
    return result


def measure_point(settings: SweepSettings, data, run: Run) -> tuple[dict, None]:
    """Train and evaluate one (point, seed) ``run`` of the sweep: its metrics."""
    point = run.point
    model = build(settings, point["method"], seed=run.seed, **point["options"])
    train(settings, model, data, seed=run.seed)
    outputs = predict_splits(model, data, seed=run.seed, validation=False)
    return run_metrics(protocol_record(outputs, data.num_classes)[0]), None


def _brief(metrics: dict) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in metrics.items())
