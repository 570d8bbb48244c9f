"""The one-command benchmark: every method x seed, trained and evaluated under one protocol.

Each finished (method, seed) run is written at once, atomically, to
``<out>/runs/<method>/seed-<seed>.json`` (the record) and, first, ``seed-<seed>.pt`` beside it
(its per-example predictions, which the report's paired bootstrap resamples); a rerun with the
same ``--out`` reads those back and trains only what is missing -- a run whose predictions file
is missing or unreadable counts as missing -- so an interrupted benchmark loses at most the run
in progress (the loop and its resume: :mod:`~ensemblekit.experiments.runs`).
A rerun whose settings would change a finished run's result is refused (naming the keys that
differ) instead of mixing two protocols in one table. When every run is there, the results are
aggregated over seeds into ``results.json``, ``results.csv``, ``report.md`` and the figures.

Each split (test, validation, OOD, each corrupted set) goes through a trained model once; the
record's metrics, its ``"calibrated"`` ("+TS": temperature fitted on the validation split, pool
mode; :mod:`~ensemblekit.experiments.calibrated`) and the saved predictions all come from those
outputs (:mod:`~ensemblekit.experiments.protocol`). After training, the
inference cost of every method is measured once per benchmark run, all models in this one
process (:func:`measure_benchmark_costs`), and written to ``cost.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from .. import checkpoint, plots, report
from .. import data as datasets
from ..atomic import atomic_write_text
from ..methods import available_methods
from ..runtime import choose_device
from .benchmark_protocol import benchmark_protocol
from .calibrated import calibrated_record
from .checks import check_ood, check_run_keys, check_shift, check_toml_flag
from .config import Settings
from .cost import compiled_inference, count_parameters, measure_costs
from .pipeline import build, check_batch_size, train
from .protocol import predict_splits, protocol_record, validation_metrics
from .roles import reference_method
from .runs import Log, RecordStore, ResumableRuns, Run, RunGrid, read_sidecar
from .splits import load_experiment_data

#: Seconds of timed work per candidate in the benchmark's cost measurement (the benchmark
#: scripts' ">= 1 s of work"), and its rounds.
COST_MIN_SECONDS = 1.0
COST_ROUNDS = 10
#: The batch the cost is timed on: the first images of the test set.
COST_BATCH = 256
#: The suffix of a compiled-inference model (Masksembles) timed tiled (``predict_members``)
#: beside the compiled one.
TILED_SUFFIX = "_tiled"


@dataclass
class BenchmarkSettings(ResumableRuns, Settings):
    """``ensemblekit benchmark``: every method x seed, trained and evaluated the same way.

    ``methods``: default every registered method, in the registry's (the spectrum's) order.
    ``corruptions``: names, ``"all"`` (the 15 CIFAR-10-C benchmark kinds) or ``"none"``.
    ``ood``: a dataset name, ``"auto"`` (the dataset's registered pair) or ``"none"``.
    ``corrupted_dir``: a CIFAR-10-C-layout folder to evaluate shift on (e.g. the official
    CIFAR-10-C); by default the corrupted test sets are generated once into ``<out>/corrupted``.
    ``checkpoints``: keep per-epoch training checkpoints (a killed run resumes mid-training)
    and save every trained model under ``<out>/models``.
    """

    methods: list[str] = field(default_factory=available_methods)
    seeds: int = 3
    mc_samples: int | None = None
    corruptions: list[str] | str = "all"
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    ood: str = "auto"
    corrupted_dir: str | None = None
    checkpoints: bool = False
    eval_batch_size: int = 500

    command = "benchmark"

    #: Keys that do not change what a finished run computed: a rerun may change them freely.
    RESUME_FREE = ("methods", "seeds", "out", "data_dir", "download", "device", "threads",
                   "jobs", "progress", "checkpoints", "corrupted_dir")

    def validate(self) -> None:
        super().validate()
        check_run_keys(self)
        self.corruptions, self.severities = check_shift(self.dataset, self.corruptions,
                                                        self.severities)
        self.ood = check_ood(self.dataset, self.ood)
        check_toml_flag("checkpoints", self.checkpoints)

    def plan(self) -> str:
        """One line before the run: what it trains and evaluates, and where it writes."""
        return (f"benchmark: {', '.join(self.methods)} x {self.seeds} seed(s) on "
                f"{self.dataset} ({self.backbone}, {self.epochs} epochs); "
                f"{len(self.corruptions)} corruptions x {len(self.severities)} severities; "
                f"OOD: {self.ood}; writing to {self.out}")

    def fingerprint(self) -> dict:
        values = super().fingerprint()
        if not values["method_options"]:
            # none set: the same runs as before the key existed, which then still resume
            values.pop("method_options")
        return values


def run_path(out: str | Path, method: str, seed: int) -> Path:
    """Where the result of one (method, seed) run is kept."""
    return Path(out) / "runs" / method / f"seed-{seed}.json"


def predictions_path(out: str | Path, method: str, seed: int) -> Path:
    """Where the per-example predictions of one run are kept (beside its record)."""
    return run_path(out, method, seed).with_suffix(".pt")


def load_predictions(out: str | Path, method: str, seed: int) -> dict | None:
    """The predictions :func:`run_one` saved for a run (see
    :func:`~ensemblekit.experiments.protocol.protocol_record`), or None if missing or
    unreadable."""
    return read_sidecar(predictions_path(out, method, seed))


def benchmark_runs(settings: BenchmarkSettings) -> list[Run]:
    """Every (method, seed) run, method by method."""
    return [Run(key=(method, seed), point=method, seed=seed, name=f"{method}/seed-{seed}")
            for method in settings.methods for seed in settings.seed_list]


def benchmark_store(settings: BenchmarkSettings, *, with_predictions: bool = True
                    ) -> RecordStore:
    """The benchmark's records (``runs/<method>/seed-<seed>.json``) and, with
    ``with_predictions``, their predictions beside them: a run without a readable predictions
    file counts as unfinished (its verdicts need them)."""
    out = Path(settings.out)
    return RecordStore(
        out=out, fingerprint=settings.fingerprint(),
        path=lambda run: run_path(out, run.point, run.seed),
        sidecar=(lambda run: predictions_path(out, run.point, run.seed))
        if with_predictions else None)


def run_benchmark(settings: BenchmarkSettings, *, log: Log = print) -> dict:
    """Train and evaluate ``settings.methods`` x ``settings.seeds``; write everything to
    ``settings.out``; return the aggregated results (the content of ``results.json``)."""
    out = Path(settings.out)
    grid = RunGrid(benchmark_runs(settings), store=benchmark_store(settings), log=log)
    # Every model is built once up front: a batch size its member groups do not divide is
    # refused here, before any data is read or any training starts.
    for method in settings.methods:
        check_batch_size(settings, build(settings, method, seed=0))
    data = None
    if grid.todo:
        data = load_experiment_data(
            settings, ood=settings.ood, corruptions=settings.corruptions,
            severities=settings.severities, corrupted_dir=settings.corrupted_dir, log=log)
    records = grid.run(partial(compute_run, settings, data),
                       summary=lambda run, record: _summary(record), desc="benchmark",
                       jobs=settings.parallel_runs(len(grid.todo)))
    started = time.perf_counter()
    cost = measure_benchmark_costs(settings)
    atomic_write_text(out / "cost.json", json.dumps(cost, indent=1))
    log(f"cost: {len(cost['models'])} models measured in one process "
        f"({time.perf_counter() - started:.1f} s)")
    predictions = {key: grid.extras[key] for key in records}
    results = report.aggregate(records, benchmark_protocol(settings, records),
                               predictions=predictions, cost=cost)
    report.write_reports(out, results, records)
    plots.benchmark_figures(out / "figures", results, records)
    return results


def measure_benchmark_costs(settings: BenchmarkSettings, *,
                            min_seconds: float = COST_MIN_SECONDS,
                            rounds: int = COST_ROUNDS) -> dict:
    """Parameters, FLOPs per sample and latency of every method, as ratios to the single
    model, measured here in one process (:func:`ensemblekit.experiments.cost.measure_costs`).

    The models are freshly built with seed 0 (cost depends on the architecture, not on the
    weights: masks are fixed at build time), in eval mode, on ``settings.device`` (else CUDA
    when available, as training), with ``settings.threads`` CPU threads; the batch is the
    first :data:`COST_BATCH` test images, normalised. A method with compiled inference
    (Masksembles) is timed twice: through ``compile_members`` (its inference path) and tiled
    through ``predict_members`` (name ``<method>_tiled``). The single model (the registry's
    reference) is the reference, built even when ``settings.methods`` lacks it.
    """
    # where the models trained: the settings' device, else as training picks it (as tune does)
    device = choose_device(settings.device)
    reference = reference_method()
    methods = list(dict.fromkeys([reference, *settings.methods]))
    models = {method: build(settings, method, seed=0).to(device) for method in methods}
    tiled = []
    for method in methods:
        if compiled_inference(models[method]):
            models[method + TILED_SUFFIX] = models[method]
            tiled.append(method + TILED_SUFFIX)
    test = datasets.load_dataset(settings.dataset, "test", data_dir=settings.data_dir,
                                 download=settings.download)
    # only the images timed are read (a streamed test set is never loaded whole)
    example = torch.stack([torch.as_tensor(test[index][0])
                           for index in range(min(COST_BATCH, len(test)))]).float().to(device)
    normalize = datasets.normalizer(settings.dataset)
    if normalize is not None:
        example = normalize(example)
    cost = measure_costs(models, example, reference=reference, min_seconds=min_seconds,
                         rounds=rounds, threads=settings.threads, tiled=tiled)
    cost["protocol"]["models"] = "freshly built (seed 0), eval mode; latency does not depend " \
                                 "on the weights"
    return cost


def compute_run(settings: BenchmarkSettings, data, run: Run) -> tuple[dict, dict]:
    """:func:`run_one` of a grid's ``run`` (a module-level function: it pickles, so that
    runs can be computed in worker processes)."""
    return run_one(settings, run.point, run.seed, data)


def run_one(settings: BenchmarkSettings, method: str, seed: int, data) -> tuple[dict, dict]:
    """Build, train and evaluate one (method, seed) run; return its JSON-ready record and its
    per-example predictions.

    Each split goes through the trained model once (:func:`~ensemblekit.experiments.protocol.
    predict_splits`): the record's metrics, its ``"calibrated"`` ("+TS": temperature fitted on
    the validation split, pool mode, scored on test) and the predictions all come from those
    outputs. The record's ``train`` holds the last epoch's training loss and accuracy (and
    ``epochs``, ``seconds``); ``validation`` the ensemble prediction's metrics on the
    validation split (None without one), so that under-fitting shows next to the test metrics.
    """
    model = build(settings, method, seed=seed)
    checkpoint_dir = None
    if settings.checkpoints:
        checkpoint_dir = Path(settings.out) / "checkpoints" / method / f"seed-{seed}"
    training = train(settings, model, data, seed=seed, checkpoint_dir=checkpoint_dir)
    outputs = predict_splits(model, data, seed=seed, batch_size=settings.eval_batch_size,
                             num_samples=settings.mc_samples)
    evaluation, predictions = protocol_record(outputs, data.num_classes, with_predictions=True)
    record = {
        "method": method,
        "seed": seed,
        "settings": settings.fingerprint(),
        "model_config": model.config,
        "params": count_parameters(model),
        "num_members": model.num_members,
        "train": training,
        "validation": validation_metrics(outputs),
        "ood_name": data.ood_name,
        "ood_status": data.ood_status,
        **evaluation,
    }
    if data.validation is not None:
        record["calibrated"] = calibrated_record(outputs, mode="pool")
    if settings.checkpoints:
        checkpoint.save(model, Path(settings.out) / "models" / f"{method}-seed-{seed}.pt",
                        metadata={"dataset": settings.dataset, "seed": seed,
                                  "test": record["test"]})
    return record, predictions


def finished_runs(settings: BenchmarkSettings, *, with_predictions: bool = False):
    """The records already in ``settings.out`` for the requested runs:
    ``{(method, seed): record}``. With ``with_predictions``, ``(records, predictions)`` with
    ``{(method, seed): predictions}``, and a run without a readable predictions file is left
    out of both (the benchmark recomputes it: its verdicts need the predictions).

    Raises ``ValueError`` if one was computed under settings that change its result.
    """
    grid = RunGrid(benchmark_runs(settings),
                   store=benchmark_store(settings, with_predictions=with_predictions),
                   log=lambda message: None)
    return (grid.records, grid.extras) if with_predictions else grid.records


def _summary(record: dict) -> str:
    test = record["test"]
    parts = [f"{record['method']} seed {record['seed']}: acc {test['accuracy']:.3f}",
             f"NLL {test['nll']:.3f}", f"ECE {test['ece']:.3f}"]
    if "shift_mean" in record:
        shift_ece = [metrics["ece"] for metrics in record["shift_mean"].values()]
        parts.append(f"shift ECE {sum(shift_ece) / len(shift_ece):.3f}")
    parts.append(f"train {record['train']['seconds']:.1f} s")
    return ", ".join(parts)
