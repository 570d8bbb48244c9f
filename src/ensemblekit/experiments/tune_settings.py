"""``ensemblekit tune``'s settings: which methods, the grid of each method's own knobs, the
budget and how the cost is timed; and, one class per task, everything the tune run does
differently for that task: the metrics it keeps and sets against cost, how it reads the data
and scores a trained point, what the report shows, which benchmark reads its ``tuned.toml``
(the run itself: :mod:`~ensemblekit.experiments.tune`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._validation import check_float, check_int
from ..methods import available_methods, method_entries
from ..metrics import evaluate_predictions, evaluate_regression
from ..predict import member_samples, predict
from .benchmark import BenchmarkSettings
from .checks import (
    METHOD_EPOCHS,
    check_keys,
    check_methods,
    check_ood,
    check_option_value,
    json_key,
    method_option_keys,
)
from .config import Settings, merge_method_options
from .cost import parse_budget
from .regression_benchmark import RegressionBenchmarkSettings
from .regression_protocol import load_regression_data, predict_gaussian
from .runs import Log, ResumableRuns
from .splits import load_experiment_data

#: The grid key that scales a method's training epochs (not a build option).
EPOCHS_FACTOR = "epochs_factor"


#: The training length every method is tuned over (multiples of the recipe's epochs), whatever
#: its own knobs: the same procedure for each method. Offering longer training only to the
#: methods that fit last (Masksembles, MC-Dropout) would confound the method with its training
#: length -- measured: on diabetes the single model and the Deep Ensemble at 2x the recipe's
#: epochs reach test NLL 5.353 / 5.344 against 5.414 / 5.408 at 1x, most of the gap the
#: tuned Masksembles (2x) showed over them. A method's ``tune_grid`` may list its own values.
SHARED_EPOCHS_FACTORS = (1.0, 2.0)


def default_grid() -> dict[str, dict[str, list]]:
    """``{method: {option: [values]}}``: each registered method's ``tune_grid`` (its own knobs,
    with the reason for each in the method's module) and ``epochs_factor``, a multiple of the
    recipe's epochs (the entry's values, else :data:`SHARED_EPOCHS_FACTORS`); a method without
    knobs of its own (single, Deep Ensembles) is tuned over its training length only."""
    grid = {}
    for entry in method_entries():
        table = {key: list(values) for key, values in entry.tune_grid.items()}
        table.setdefault(EPOCHS_FACTOR, list(SHARED_EPOCHS_FACTORS))
        grid[entry.name] = table
    return grid


@dataclass
class TuneSettings(ResumableRuns, Settings):
    """``ensemblekit tune``: every ``grid`` point of each method, trained and scored on the
    validation split (never the test set), beside its measured inference cost.

    ``grid``: ``{method: {option: [values]}}``, each method's grid as lists of its
    ``build_model`` options (and the backbone's, e.g. ``width``) and ``epochs_factor``
    (multiplies ``epochs``); a table given in a config (``[grid.masksembles]``) replaces the
    default lists key by key (:func:`default_grid`: the registry entries' ``tune_grid``); a
    method of ``methods`` without a grid is one point. ``budget``: e.g.
    ``"latency<=1.3x,params<=1.1x"``: the pick per method is the lowest validation NLL among the
    points within it (kinds: latency, params, flops; ratios to the single model). ``ood``:
    the OOD set scored against the validation split. ``cost_batch``: examples per timed
    call; ``cost_seconds``: least timed work per model; ``cost_rounds``: timing rounds.
    """

    methods: list[str] = field(default_factory=available_methods)
    seeds: int = 2  # the digits validation split is 250 images: one seed's pick is noisy
    grid: dict = field(default_factory=dict)
    budget: str | None = None
    ood: str = "auto"
    eval_batch_size: int = 500
    cost_batch: int = 256
    cost_seconds: float = 0.3
    cost_rounds: int = 5

    command = "tune"
    uses_recipe_method_options = False
    #: The validation metrics kept per point (lower is better but for accuracy), those the
    #: Pareto fronts set against cost, and what a point's training fit reports beside its loss.
    validation_metrics = ("nll", "ece", "brier", "accuracy")
    front_metrics = ("nll", "ece")
    fit_metric = "accuracy"
    #: The settings ``ensemblekit benchmark`` reads the written ``tuned.toml`` with.
    benchmark_settings = BenchmarkSettings

    #: Keys that do not change a finished grid point's result: a rerun may change them freely
    #: (a point's own options are part of its record, so a changed grid resumes too).
    RESUME_FREE = ("methods", "seeds", "out", "data_dir", "download", "device", "threads",
                   "jobs", "progress", "grid", "budget", "cost_batch", "cost_seconds",
                   "cost_rounds")

    def validate(self) -> None:
        super().validate()
        self.methods = check_methods(self.methods)
        self.seeds = check_int("seeds", self.seeds, minimum=1)
        self.grid = check_grid(merge_method_options(default_grid(), self.grid), self.backbone)
        if self.budget is not None:
            parse_budget(self.budget)
        self.ood = check_ood(self.dataset, self.ood)
        self.eval_batch_size = check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        self.cost_batch = check_int("cost_batch", self.cost_batch, minimum=2)
        self.cost_seconds = check_float("cost_seconds", self.cost_seconds, minimum=0.0)
        self.cost_rounds = check_int("cost_rounds", self.cost_rounds, minimum=1)
        if not self.validation_fraction:
            raise ValueError("tune scores every configuration on the validation split, but "
                             "validation_fraction is 0; set it above 0 (default: the "
                             "dataset's, e.g. 0.2 for digits)")

    # -- what the tune run does with them (one override per task) -------------------------

    def load_data(self, log: Log):
        """What every point trains on and is scored on (with the validation split)."""
        return load_experiment_data(self, ood=self.ood, log=log)

    def score_point(self, model, data, seed: int) -> dict:
        """A trained point's validation scores, as its record keeps them: one pass over the
        validation split and one over the OOD set (when there is one)."""
        options = dict(dataset=self.dataset, batch_size=self.eval_batch_size, seed=seed,
                       num_samples=member_samples(model, None))
        validation = predict(model, data.validation, **options)
        ood_logits = None if data.ood is None else predict(model, data.ood, **options).logits
        metrics = evaluate_predictions(validation.logits, validation.labels,
                                       ood_member_logits=ood_logits)
        scores = {"validation": {key: float(metrics[key]) for key in self.validation_metrics},
                  "validation_size": int(validation.labels.shape[0]),
                  "ood_name": data.ood_name, "ood_status": data.ood_status}
        if "ood" in metrics:
            scores["ood"] = metrics["ood"]
        return scores

    def scores_text(self, validation: dict) -> str:
        """A point's validation scores in the run's log line."""
        return (f"NLL {validation['nll']:.4f}, ECE {validation['ece']:.4f}, acc "
                f"{validation['accuracy']:.3f}")

    def ood_protocol(self) -> str:
        """How ``tune.json``'s protocol states the OOD score."""
        return (f"AUROC of the predictive entropy, validation split vs the OOD set's test "
                f"split ({self.ood})")

    def report_keys(self) -> dict:
        """What ``tune.json`` adds for the report (none: the report's defaults are these
        metrics' columns)."""
        return {}


def check_grid(grid, backbone: str | None = None) -> dict:
    """``{method: {option: [values]}}`` checked: known methods and keys (a method's
    ``[method_options]`` keys, with ``epochs_factor`` for ``epochs``, and ``backbone``'s
    options), non-empty lists without repeats (a single value becomes a list), every value
    checked as in ``[method_options]``."""
    if not isinstance(grid, dict):
        raise ValueError(f"grid must be a table of tables, e.g. [grid.masksembles]; got {grid!r}")
    check_keys(grid, None, source="grid", valid=available_methods())
    checked = {}
    for method in grid:
        table = grid[method]
        if not isinstance(table, dict):
            raise ValueError(f"grid.{method} must be a table ([grid.{method}] in TOML), got "
                             f"{table!r}")
        valid = [EPOCHS_FACTOR if key == METHOD_EPOCHS else key
                 for key in method_option_keys(method, backbone)]
        check_keys(table, None, source=f"[grid.{method}]", valid=valid)
        values = {}
        for key, items in table.items():
            items = items if isinstance(items, list) else [items]
            if not items:
                raise ValueError(f"grid.{method}.{key} is empty; give at least one value")
            if key == EPOCHS_FACTOR:
                items = [check_float(f"grid.{method}.{key}", item, minimum=0.0,
                                     min_inclusive=False) for item in items]
            else:
                items = [check_option_value(f"grid.{method}.{key}", key, item)
                         for item in items]
            if len({json_key(item) for item in items}) != len(items):
                raise ValueError(f"grid.{method}.{key} lists a value twice: {items}; list "
                                 "each once")
            values[key] = items
        checked[method] = values
    return checked


@dataclass
class RegressionTuneSettings(TuneSettings):
    """``ensemblekit tune --task regression``: the same grid and procedure on a regression set
    (default diabetes), each point scored by the validation NLL of its members' mixture (and
    the calibration error, CRPS, RMSE beside it), in the targets' original units; no OOD set."""

    dataset: str = "diabetes"
    seeds: int = 2  # the diabetes validation split is 35 inputs: one seed's pick is noisy

    task = "regression"
    #: The members' mixture NLL and CRPS, the quantile calibration error, RMSE (original
    #: units; all lower is better); the fronts' metrics; the training fit.
    validation_metrics = ("nll", "calibration_error", "crps", "rmse")
    front_metrics = ("nll", "calibration_error")
    fit_metric = "rmse"
    benchmark_settings = RegressionBenchmarkSettings
    #: How the tune report names a regression point's columns (``report.tune.columns``).
    report_columns = {
        "validation": [["nll", "NLL"], ["calibration_error", "cal. error"], ["rmse", "RMSE"]],
        "fit": ["train_rmse", "train RMSE"],
        "csv": [*validation_metrics, "train_loss", "train_rmse"],
    }

    def load_data(self, log: Log):
        return load_regression_data(self)

    def score_point(self, model, data, seed: int) -> dict:
        """The validation scores in the targets' original units (no OOD set: the regression
        sets have none)."""
        validation = predict_gaussian(model, data.validation[0], seed=seed,
                                      batch_size=self.eval_batch_size)
        units = data.standardization
        metrics = evaluate_regression(*units.to_original(*validation),
                                      units.original_targets(data.validation[1]))
        return {"validation": {key: float(metrics[key]) for key in self.validation_metrics},
                "validation_size": int(data.validation[1].shape[0]), "ood_name": "none",
                "ood_status": "off"}

    def scores_text(self, validation: dict) -> str:
        return ", ".join(f"{key} {value:.4g}" for key, value in validation.items())

    def ood_protocol(self) -> str:
        return "none (the regression sets have no OOD pair)"

    def report_keys(self) -> dict:
        return {"columns": self.report_columns, "task": self.task}
