"""``ensemblekit benchmark --task regression``: every method x seed on a regression set, trained
and scored under one protocol, in the targets' original units.

The default set is scikit-learn's diabetes (embedded). ``uci-<name>`` runs the published UCI
protocol (Hernandez-Lobato & Adams 2015, as Gal & Ghahramani 2016 and Lakshminarayanan et al.
2017 use it): the release's own train/test splits (every one, or ``splits``), inputs and
targets standardised on each training part, one hidden layer of ``n_hidden`` units trained for
``n_epochs`` (both read from the set's files while ``published_protocol`` is on), RMSE and NLL
in the target's original units, reported as mean +- standard error over splits.

Each finished (method, split, seed) run is kept as ``<out>/runs/<method>/[split-<i>/]
seed-<s>.json`` with its per-input test values beside it (``.pt``), through the one run-grid
loop with resume (:mod:`~ensemblekit.experiments.runs`); what one run computes is
:mod:`~ensemblekit.experiments.regression_protocol`. When every run is there, the results are
aggregated (:mod:`ensemblekit.report.regression`) into ``results.json``, ``results.csv``,
``report.md`` and the figures (calibration curves, sparsification curves, sigma against error,
the verdicts' intervals).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .. import data as datasets
from .. import plots, report
from .._validation import check_float, check_int
from ..data.uci import UCI_PREFIX
from ..methods import available_methods
from .benchmark_protocol import model_protocol, tuned_source
from .checks import as_list, check_run_keys, check_toml_flag
from .config import Settings
from .cost import count_parameters
from .pipeline import build, check_batch_size, train
from .regression_protocol import load_regression_data, predict_gaussian, regression_record
from .runs import Log, RecordStore, ResumableRuns, Run, RunGrid


@dataclass
class RegressionBenchmarkSettings(ResumableRuns, Settings):
    """``ensemblekit benchmark --task regression``: every method x seed on a regression set.

    ``methods``: default every registered method. ``alpha``: the conformal intervals' miss
    rate (nominal coverage ``1 - alpha``). UCI sets only: ``splits``, ``"all"`` (every split
    of ``n_splits.txt``) or a list of split indices; ``published_protocol``: train with the
    set's ``n_hidden.txt`` units in one hidden layer and ``n_epochs.txt`` epochs (false: the
    recipe's ``hidden`` and ``epochs``, or the flags').
    """

    dataset: str = "diabetes"
    methods: list[str] = field(default_factory=available_methods)
    seeds: int = 3
    mc_samples: int | None = None
    eval_batch_size: int = 500
    alpha: float = 0.05
    splits: list[int] | str = "all"
    published_protocol: bool = True

    command = "benchmark"
    task = "regression"

    #: Keys that do not change what a finished run computed: a rerun may change them freely.
    RESUME_FREE = ("methods", "seeds", "out", "data_dir", "download", "device", "threads",
                   "jobs", "progress", "splits")

    def validate(self) -> None:
        super().validate()
        check_run_keys(self)
        self.alpha = check_float("alpha", self.alpha, minimum=0.0, maximum=1.0,
                                 min_inclusive=False, max_inclusive=False)
        check_toml_flag("published_protocol", self.published_protocol)
        if self.splits != "all":
            if not is_uci(self.dataset):
                raise ValueError(f"splits picks UCI splits, but {self.dataset!r} has one "
                                 "train/test split; drop splits or pick a uci-<name> dataset")
            self.splits = sorted({check_int("split", s, minimum=0)
                                  for s in as_list(self.splits)})
            if not self.splits:
                raise ValueError("splits must list at least one split index, or be \"all\"")
        if not self.validation_fraction:
            raise ValueError("the regression benchmark fits variance scaling and conformal "
                             "intervals on the validation split, but validation_fraction is "
                             "0; set it above 0 (default 0.1)")

    def plan(self) -> str:
        """One line before the run: what it trains and evaluates, and where it writes."""
        return (f"benchmark (regression): {', '.join(self.methods)} x {self.seeds} seed(s) "
                f"on {self.dataset}; writing to {self.out}")


def is_uci(dataset: str) -> bool:
    """Whether ``dataset`` is read from the UCI release (named ``uci-<folder>``)."""
    return dataset.startswith(UCI_PREFIX)


def with_published_protocol(settings: RegressionBenchmarkSettings
                            ) -> tuple[RegressionBenchmarkSettings, list[int | None]]:
    """The settings a run uses and the splits it runs (``[None]``: the one train/test split).

    For a UCI set the files state the protocol (:func:`~ensemblekit.data.uci_protocol`): its
    splits, and with ``published_protocol`` one hidden layer of ``n_hidden`` units (the mlp
    backbone) trained for ``n_epochs``, replacing the recipe's sizes and epochs (and any
    method's own epochs) -- so the fingerprint of every run records what it trained with."""
    if not is_uci(settings.dataset):
        return settings, [None]
    stated = datasets.uci_protocol(settings.dataset, settings.data_dir)
    splits = list(range(stated.n_splits)) if settings.splits == "all" else settings.splits
    beyond = [s for s in splits if s >= stated.n_splits]
    if beyond:
        raise ValueError(f"splits {beyond} are out of range: {settings.dataset} has "
                         f"{stated.n_splits} splits (0 to {stated.n_splits - 1})")
    if settings.published_protocol:
        options = {method: {key: value for key, value in table.items() if key != "epochs"}
                   for method, table in settings.method_options.items()}
        settings = dataclasses.replace(settings, backbone="mlp", hidden=[stated.n_hidden],
                                       epochs=stated.n_epochs, method_options=options)
    return settings, splits


def run_path(out: str | Path, method: str, split: int | None, seed: int) -> Path:
    """Where the record of one (method, split, seed) run is kept."""
    folder = Path(out) / "runs" / method
    if split is not None:
        folder = folder / f"split-{split}"
    return folder / f"seed-{seed}.json"


def regression_runs(settings: RegressionBenchmarkSettings, splits: list[int | None]
                    ) -> list[Run]:
    """Every (method, split, seed) run, method by method, split by split."""
    return [Run(key=(method, split, seed), point=(method, split), seed=seed,
                name=f"{method}/" + ("" if split is None else f"split-{split}/") + f"seed-{seed}")
            for method in settings.methods for split in splits for seed in settings.seed_list]


def run_regression_benchmark(settings: RegressionBenchmarkSettings, *,
                             log: Log = print) -> dict:
    """Train and score ``settings.methods`` x splits x ``settings.seeds``; write everything to
    ``settings.out``; return the aggregated results (the content of ``results.json``)."""
    settings, splits = with_published_protocol(settings)
    out = Path(settings.out)
    store = RecordStore(
        out=out, fingerprint=settings.fingerprint(),
        path=lambda run: run_path(out, run.point[0], run.point[1], run.seed),
        sidecar=lambda run: run_path(out, run.point[0], run.point[1], run.seed
                                     ).with_suffix(".pt"))
    grid = RunGrid(regression_runs(settings, splits), store=store, log=log)
    # Every model is built once up front: a batch size its member groups do not divide is
    # refused here, before any data is read or any training starts.
    for method in settings.methods:
        check_batch_size(settings, build(settings, method, seed=0))
    records = grid.run(SplitRuns(settings), summary=lambda run, record: _summary(record),
                       desc="benchmark", jobs=settings.parallel_runs(len(grid.todo)))
    # the verdicts compare methods on one test set: the first split's (the only one but UCI)
    first = splits[0]
    predictions = {(method, seed): grid.extras[(method, split, seed)]
                   for method, split, seed in records if split == first}
    results = report.regression_results(list(records.values()), protocol(settings, splits),
                                        predictions=predictions)
    report.write_regression_reports(out, results)
    plots.regression_figures(out / "figures", results)
    return results


class SplitRuns:
    """Computes a grid's (method, split) runs, loading each split when a run first needs it
    and keeping one split in memory at a time (a plain object: it pickles for the workers,
    each of which keeps its own split)."""

    def __init__(self, settings: RegressionBenchmarkSettings) -> None:
        self.settings = settings
        self.loaded: dict = {}

    def __call__(self, run: Run) -> tuple[dict, dict]:
        method, split = run.point
        if split not in self.loaded:
            self.loaded.clear()
            self.loaded[split] = load_regression_data(self.settings, split)
        return run_one(self.settings, method, run.seed, self.loaded[split])


def run_one(settings: RegressionBenchmarkSettings, method: str, seed: int, data
            ) -> tuple[dict, dict]:
    """Build, train and score one run on ``data`` (a :class:`~ensemblekit.experiments.
    regression_protocol.RegressionData`); return its record and its per-input test values."""
    model = build(settings, method, seed=seed)
    training = train(settings, model, data, seed=seed)
    options = dict(seed=seed, batch_size=settings.eval_batch_size,
                   num_samples=settings.mc_samples)
    test = predict_gaussian(model, data.test[0], **options)
    validation = None if data.validation is None else predict_gaussian(
        model, data.validation[0], **options)
    evaluation, per_input = regression_record(
        test, data.test[1], validation, None if data.validation is None else data.validation[1],
        data.standardization, alpha=settings.alpha)
    record = {"method": method, "split": data.split, "seed": seed,
              "settings": settings.fingerprint(), "model_config": model.config,
              "params": count_parameters(model), "num_members": model.num_members,
              "train": training, **evaluation}
    return record, per_input


def protocol(settings: RegressionBenchmarkSettings, splits: list[int | None]) -> dict:
    """What was run, for the report and for anyone reading ``results.json`` later."""
    uci = is_uci(settings.dataset)
    return {
        **model_protocol(settings),
        "task": "regression",
        "seeds": settings.seed_list,
        "splits": None if splits == [None] else splits,
        "published_protocol": uci and settings.published_protocol,
        "validation_fraction": settings.validation_fraction,
        "alpha": settings.alpha,
        "units": "the targets' original units (predictions mapped back with the training "
                 "part's statistics)",
        "aggregation": "each member a Gaussian; the ensemble is their mixture (NLL, CRPS) and "
                       "its moment-matched Gaussian (intervals, calibration, ENCE, AUSE)",
        "spread": ("standard error over splits (std / sqrt(splits)) of each split's mean "
                   "over seeds" if uci else "sample standard deviation over seeds (n - 1)"),
        "method_settings": {method: settings.method_settings(method)
                            for method in settings.methods},
        "tuned": tuned_source(settings),
    }


def _summary(record: dict) -> str:
    test = record["test"]
    where = "" if record["split"] is None else f" split {record['split']}"
    return (f"{record['method']}{where} seed {record['seed']}: RMSE {test['rmse']:.4g}, "
            f"NLL {test['nll']:.4f}, CRPS {test['crps']:.4g}, PICP95 {test['picp_95']:.3f}, "
            f"train {record['train']['seconds']:.1f} s")
