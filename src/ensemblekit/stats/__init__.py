"""Statistics behind the reports' verdicts: a paired bootstrap over seeds and test examples
(:mod:`.bootstrap`), metrics computed on every replicate at once (:mod:`.weighted`) and the
papers' claims tested with them (:mod:`.claims`; the claims themselves are data in
:mod:`ensemblekit.methods.claims`).

Imports metrics (public functions) and methods (the registry, the claims); never experiments,
report or plots.
"""

from .bootstrap import (
    DEFAULT_N_BOOT,
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    VERDICTS,
    Comparison,
    Interval,
    Metric,
    Resamples,
    closeness,
    combine,
    compare,
    compare_replicates,
    draw_resamples,
    interval,
    metric_from_function,
    observed,
    paired_bootstrap,
    paired_difference,
    replicates,
    verdict,
)
from .claims import BOOTSTRAP_SEED, CLAIM_METRICS, ClaimTable, orderings, study_verdicts
from .regression_claims import regression_orderings

__all__ = [
    "BOOTSTRAP_SEED",
    "CLAIM_METRICS",
    "ClaimTable",
    "Comparison",
    "DEFAULT_N_BOOT",
    "DOES_NOT_HOLD",
    "HOLDS",
    "INCONCLUSIVE",
    "Interval",
    "Metric",
    "Resamples",
    "VERDICTS",
    "closeness",
    "combine",
    "compare",
    "compare_replicates",
    "draw_resamples",
    "interval",
    "metric_from_function",
    "observed",
    "orderings",
    "paired_bootstrap",
    "paired_difference",
    "regression_orderings",
    "replicates",
    "study_verdicts",
    "verdict",
]
