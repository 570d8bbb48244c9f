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
"""

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
from .uncertainty import (
    expected_entropy,
    mutual_information,
    predictive_entropy,
    variation_ratio,
)

__all__ = [
    "DISAGREEMENT_OOD_SCORES",
    "LOGIT_OOD_SCORES",
    "OOD_SCORES",
    "PROBABILITY_FLOOR",
    "PredictionAccumulator",
    "SELECTIVE_COVERAGES",
    "SELECTIVE_RISKS",
    "accuracy",
    "adaptive_ece",
    "aupr",
    "aupr_in",
    "augrc",
    "auroc",
    "aurc",
    "brier",
    "brier_per_sample",
    "calibration_gaps",
    "confidence_and_correct",
    "coverage_at_risk",
    "e_aurc",
    "ece",
    "evaluate_predictions",
    "expected_entropy",
    "fpr_at_95_tpr",
    "fpr_at_tpr",
    "linear_cka",
    "mce",
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
    "predictive_entropy",
    "reliability_bins",
    "risk_at_coverage",
    "risk_coverage_curve",
    "selective_summary",
    "variation_ratio",
    "weight_similarity",
]
