"""Which experiments run under each task (``--task classification`` / ``--task regression``):
the settings class, run function and summary table of ``benchmark``, ``tune`` and ``toy``.

The one place that tells the tasks apart at the experiments level: what a task does
differently inside an experiment lives in its settings class (e.g. the tune settings' metrics,
data loading and scoring; the benchmark settings' :meth:`plan`), and a caller picks the
classes here by the task's name instead of comparing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..report import regression_summary_table, summary_table
from .benchmark import BenchmarkSettings, run_benchmark
from .config import Settings
from .regression_benchmark import RegressionBenchmarkSettings, run_regression_benchmark
from .regression_toy import RegressionToySettings, run_regression_toy
from .toy import ToySettings, run_toy
from .tune_settings import RegressionTuneSettings, TuneSettings


@dataclass(frozen=True)
class TaskExperiments:
    """One task's experiments: ``benchmark`` (its settings, the run, the results' table),
    ``tune`` (its settings; one run function, :func:`~ensemblekit.experiments.tune.run_tune`,
    serves both tasks) and ``toy`` (its settings and run)."""

    benchmark: type[Settings]
    run_benchmark: Callable[..., dict]
    summary_table: Callable[[dict], str]
    tune: type[TuneSettings]
    toy: type[Settings]
    run_toy: Callable[..., dict]


#: Every task by name, the default first.
TASKS = {
    "classification": TaskExperiments(
        benchmark=BenchmarkSettings, run_benchmark=run_benchmark, summary_table=summary_table,
        tune=TuneSettings, toy=ToySettings, run_toy=run_toy),
    "regression": TaskExperiments(
        benchmark=RegressionBenchmarkSettings, run_benchmark=run_regression_benchmark,
        summary_table=regression_summary_table, tune=RegressionTuneSettings,
        toy=RegressionToySettings, run_toy=run_regression_toy),
}
#: The task an experiment runs unless told otherwise (the settings base's).
DEFAULT_TASK = Settings.task
