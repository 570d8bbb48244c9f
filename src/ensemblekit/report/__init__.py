"""Reports: plain dicts in (the experiments' results), text and files out; never imports
experiments.

- :mod:`.benchmark`: results over seeds (``results.json``), ``results.csv``, the CLI table;
  :mod:`.benchmark_md` and :mod:`.benchmark_tables`: ``report.md``;
- :mod:`.regression` and :mod:`.regression_md`: the regression benchmark's results, CSV and
  ``report.md``;
- :mod:`.tune`: ``tune.md``, ``tune.csv``, ``tuned.toml``;
- :mod:`.diversity`: ``diversity.md`` and its tables; :mod:`.sweep`: ``sweep.md``;
- :mod:`.verdicts`: the one writer of the claims' verdict lines;
- :mod:`._format`: ``mean_std``, the one ``mean ± std`` formatter, ``json_ready``;
  :mod:`.labels`: method labels from the registry.
"""

from ._format import json_ready, mean_std, pm
from .benchmark import (
    CALIBRATED_METRICS,
    NLL_TOLERANCE,
    OOD_METRICS,
    SELECTIVE_METRICS,
    SHIFT_METRICS,
    TEST_METRICS,
    VALIDATION_METRICS,
    aggregate,
    benchmark_figure_names,
    calibrated_runs,
    calibrated_summary,
    results_csv,
    risk_coverage_mean,
    summary_table,
)
from .benchmark_md import markdown, write_reports
from .labels import method_label, short_label
from .regression import regression_csv, regression_results, regression_summary_table
from .regression_md import regression_markdown, write_regression_reports

__all__ = [
    "CALIBRATED_METRICS",
    "NLL_TOLERANCE",
    "OOD_METRICS",
    "SELECTIVE_METRICS",
    "SHIFT_METRICS",
    "TEST_METRICS",
    "VALIDATION_METRICS",
    "aggregate",
    "benchmark_figure_names",
    "calibrated_runs",
    "calibrated_summary",
    "json_ready",
    "markdown",
    "mean_std",
    "method_label",
    "pm",
    "regression_csv",
    "regression_markdown",
    "regression_results",
    "regression_summary_table",
    "results_csv",
    "risk_coverage_mean",
    "short_label",
    "summary_table",
    "write_regression_reports",
    "write_reports",
]
