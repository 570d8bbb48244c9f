"""Metrics as pure functions on tensors: exact, float64 inside, checked against references.

Shapes: probabilities ``probs`` (B, K) (for an ensemble, ``member_probs.mean(0)``), member
probabilities ``member_probs`` (M, B, K), member logits ``member_logits`` (M, B, K), integer
labels (B,), OOD score vectors (N,). Scalar metrics return Python floats; per-sample metrics
(B,) and pairwise matrices (M, M) return float64 tensors.

- classification: ``accuracy``, ``nll``, ``brier``; per example ``nll_per_sample``,
  ``brier_per_sample``
- calibration: ``ece``, ``adaptive_ece``, ``mce``, ``reliability_bins``; per example
  ``confidence_and_correct``, ``calibration_gaps`` (what a weighted ECE is made of)
- uncertainty: ``predictive_entropy``, ``expected_entropy``, ``mutual_information``,
  ``variation_ratio``
- ood: ``auroc``, ``aupr``, ``aupr_in``, ``fpr_at_tpr``, ``fpr_at_95_tpr``, ``ood_scores``
  (MSP, entropy, mutual information, variation ratio, MaxLogit, energy)
- selective: ``aurc``, ``e_aurc``, ``augrc``, ``risk_at_coverage``, ``coverage_at_risk``,
  ``risk_coverage_curve``, ``selective_summary``
- diversity: ``pairwise_disagreement``, ``normalized_disagreement``, ``pairwise_kl``,
  ``pairwise_js``, ``pairwise_cosine``, ``weight_similarity``
- cka: ``linear_cka`` (two representations), ``pairwise_cka`` (members' representations)
- evaluation: ``PredictionAccumulator``, ``evaluate_predictions`` (all of the above, streamed)

Regression (member means and variances ``(M, B, D)``, a ``GaussianMembers`` pair; one
Gaussian's ``mean``, ``var`` (B, D); targets (B, D)):

- gaussian: ``moment_match`` -> ``GaussianMoments`` (mean, variance, aleatoric, epistemic),
  ``aleatoric_variance``, ``epistemic_variance``, ``mixture_log_prob``
- regression: ``rmse``, ``mae``, ``gaussian_nll``, ``mixture_nll``, ``gaussian_crps``,
  ``mixture_crps``, ``picp``, ``mpiw``, ``gaussian_interval``
- regression_calibration: ``quantile_calibration_curve``, ``quantile_calibration_error``,
  ``ence``; sparsification: ``sparsification_curves``, ``ause``, ``spearman_std_error``
- regression_evaluation: ``RegressionAccumulator``, ``evaluate_regression`` (all of the above,
  streamed, plus OOD detection by epistemic variance)
- regression_per_sample: ``regression_per_sample`` (the per-input values the bootstrap
  resamples), ``sigma_error_bins`` (binned RMSE against predicted sigma)
"""

from ..members import GaussianMembers
from .calibration import (
    adaptive_ece,
    calibration_gaps,
    confidence_and_correct,
    ece,
    mce,
    reliability_bins,
)
from .cka import linear_cka, pairwise_cka
from .classification import (
    PROBABILITY_FLOOR,
    accuracy,
    brier,
    brier_per_sample,
    nll,
    nll_per_sample,
)
from .diversity import (
    normalized_disagreement,
    pairwise_cosine,
    pairwise_disagreement,
    pairwise_js,
    pairwise_kl,
    weight_similarity,
)
from .evaluation import PredictionAccumulator, evaluate_predictions
from .gaussian import (
    GaussianMoments,
    aleatoric_variance,
    epistemic_variance,
    mixture_log_prob,
    moment_match,
)
from .ood import (
    DISAGREEMENT_OOD_SCORES,
    LOGIT_OOD_SCORES,
    OOD_SCORES,
    aupr,
    aupr_in,
    auroc,
    fpr_at_95_tpr,
    fpr_at_tpr,
    ood_scores,
)
from .regression import (
    INTERVAL_LEVELS,
    gaussian_crps,
    gaussian_interval,
    gaussian_nll,
    mae,
    mixture_crps,
    mixture_nll,
    mpiw,
    picp,
    rmse,
)
from .regression_calibration import (
    CALIBRATION_LEVELS,
    ENCE_BINNINGS,
    ence,
    quantile_calibration_curve,
    quantile_calibration_error,
)
from .regression_evaluation import (
    REGRESSION_OOD_SCORES,
    RegressionAccumulator,
    evaluate_regression,
)
from .regression_per_sample import PER_SAMPLE_KEYS, regression_per_sample, sigma_error_bins
from .selective import (
    SELECTIVE_COVERAGES,
    SELECTIVE_RISKS,
    augrc,
    aurc,
    coverage_at_risk,
    e_aurc,
    risk_at_coverage,
    risk_coverage_curve,
    selective_summary,
)
from .sparsification import SPARSIFICATION_ERRORS, ause, sparsification_curves, spearman_std_error
from .uncertainty import (
    expected_entropy,
    mutual_information,
    predictive_entropy,
    variation_ratio,
)

__all__ = [
    "CALIBRATION_LEVELS",
    "DISAGREEMENT_OOD_SCORES",
    "ENCE_BINNINGS",
    "INTERVAL_LEVELS",
    "LOGIT_OOD_SCORES",
    "OOD_SCORES",
    "PER_SAMPLE_KEYS",
    "PROBABILITY_FLOOR",
    "REGRESSION_OOD_SCORES",
    "SELECTIVE_COVERAGES",
    "SELECTIVE_RISKS",
    "SPARSIFICATION_ERRORS",
    "GaussianMembers",
    "GaussianMoments",
    "PredictionAccumulator",
    "RegressionAccumulator",
    "accuracy",
    "adaptive_ece",
    "aleatoric_variance",
    "augrc",
    "aupr",
    "aupr_in",
    "aurc",
    "auroc",
    "ause",
    "brier",
    "brier_per_sample",
    "calibration_gaps",
    "confidence_and_correct",
    "coverage_at_risk",
    "e_aurc",
    "ece",
    "ence",
    "epistemic_variance",
    "evaluate_predictions",
    "evaluate_regression",
    "expected_entropy",
    "fpr_at_95_tpr",
    "fpr_at_tpr",
    "gaussian_crps",
    "gaussian_interval",
    "gaussian_nll",
    "linear_cka",
    "mae",
    "mce",
    "mixture_crps",
    "mixture_log_prob",
    "mixture_nll",
    "moment_match",
    "mpiw",
    "mutual_information",
    "nll",
    "nll_per_sample",
    "normalized_disagreement",
    "ood_scores",
    "pairwise_cka",
    "pairwise_cosine",
    "pairwise_disagreement",
    "pairwise_js",
    "pairwise_kl",
    "picp",
    "predictive_entropy",
    "quantile_calibration_curve",
    "quantile_calibration_error",
    "reliability_bins",
    "risk_at_coverage",
    "risk_coverage_curve",
    "regression_per_sample",
    "rmse",
    "selective_summary",
    "sparsification_curves",
    "sigma_error_bins",
    "spearman_std_error",
    "variation_ratio",
    "weight_similarity",
]
