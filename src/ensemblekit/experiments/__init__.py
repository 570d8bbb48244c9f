"""The papers' experiments, one module each, on top of the library.

- :mod:`~ensemblekit.experiments.benchmark`: every method x seed under one protocol (clean,
  corruptions x severities, OOD), resumable; results, report and figures.
- :mod:`~ensemblekit.experiments.toy`: predictive-entropy maps on a 2D problem.
- :mod:`~ensemblekit.experiments.diversity`: member similarity in function and parameter space.
- :mod:`~ensemblekit.experiments.sweep`: Masksembles over a grid of scale x number of masks.
- :mod:`~ensemblekit.experiments.single_run`: train one model, evaluate a checkpoint, write
  corrupted test sets.
- :mod:`~ensemblekit.experiments.tune`: each method's own setting chosen on the validation
  split, beside its cost (:mod:`~ensemblekit.experiments.cost`); writes a benchmark config.
- Regression (``--task regression``): :mod:`~ensemblekit.experiments.regression_benchmark`
  (every method x seed on diabetes, or the published UCI protocol over a ``uci-<name>`` set's
  splits), :mod:`~ensemblekit.experiments.regression_toy` (Example 1 on 1-D problems), and
  tune with :class:`~ensemblekit.experiments.tune_settings.RegressionTuneSettings`; what one
  regression run reads and computes: :mod:`~ensemblekit.experiments.regression_protocol`.
  Which of these each task runs: :data:`~ensemblekit.experiments.tasks.TASKS`.

What they share: :mod:`~ensemblekit.experiments.config` (the settings base and the precedence
defaults < recipe < config file < flags), :mod:`~ensemblekit.experiments.recipes` (each
dataset's defaults, from ``configs/recipes/``), :mod:`~ensemblekit.experiments.checks`,
:mod:`~ensemblekit.experiments.roles` (which registered method plays which part),
:mod:`~ensemblekit.experiments.splits` (what a run reads), :mod:`~ensemblekit.experiments.
pipeline` (build and train), :mod:`~ensemblekit.experiments.protocol` (one inference pass per
split, then every metric) and :mod:`~ensemblekit.experiments.runs` (the one run-grid loop with
resume). Each experiment's own settings class lives beside it.
"""

from .benchmark import BenchmarkSettings, run_benchmark
from .config import load_config
from .diversity import run_diversity
from .diversity_settings import DiversitySettings
from .regression_benchmark import RegressionBenchmarkSettings, run_regression_benchmark
from .regression_toy import RegressionToySettings, run_regression_toy
from .single_run import TrainSettings, run_corrupt, run_evaluate, run_train
from .sweep import SweepSettings, run_sweep
from .tasks import TASKS
from .toy import ToySettings, run_toy
from .tune import run_tune
from .tune_settings import RegressionTuneSettings, TuneSettings

#: The settings class of each subcommand that trains models (classification; the regression
#: ones: :data:`REGRESSION_SETTINGS`).
SETTINGS = {cls.command: cls for cls in (BenchmarkSettings, DiversitySettings, SweepSettings,
                                         ToySettings, TrainSettings, TuneSettings)}
#: The settings class of each subcommand under ``--task regression``.
REGRESSION_SETTINGS = {cls.command: cls for cls in (RegressionBenchmarkSettings,
                                                    RegressionToySettings,
                                                    RegressionTuneSettings)}

__all__ = [
    "REGRESSION_SETTINGS",
    "SETTINGS",
    "TASKS",
    "BenchmarkSettings",
    "DiversitySettings",
    "RegressionBenchmarkSettings",
    "RegressionToySettings",
    "RegressionTuneSettings",
    "SweepSettings",
    "ToySettings",
    "TrainSettings",
    "TuneSettings",
    "load_config",
    "run_benchmark",
    "run_corrupt",
    "run_diversity",
    "run_evaluate",
    "run_regression_benchmark",
    "run_regression_toy",
    "run_sweep",
    "run_toy",
    "run_train",
    "run_tune",
]
