"""Out-of-distribution detection: exact, rank-based AUROC, AUPR and FPR at 95% TPR.

Convention: OOD samples are the positive class and a higher score means "more OOD". Every
metric is computed from the exact ROC / precision-recall staircase over the distinct score
values (no threshold grid): a threshold ``t`` flags the samples with score >= t, and tied
scores always move together. Counts are integers, so AUROC is exact up to one final division.

Scores come from ``ood_scores(member_probs, kind)``; each kind is named for exactly what it is:
``"msp"`` = 1 - max of the mean probability, ``"entropy"`` = entropy of the mean probability
(not the mean of member entropies), ``"mutual_information"``, ``"variation_ratio"``.
"""

from __future__ import annotations

import torch

from .._validation import check_choice, check_float
from ._inputs import check_probabilities, check_scores
from .uncertainty import _entropy, _mutual_information, _variation_ratio

#: The score kinds ``ood_scores`` knows, in the order reports list them.
OOD_SCORES = ("msp", "entropy", "mutual_information", "variation_ratio")


def auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """Area under the ROC curve, OOD positive: ``P(s_out > s_in) + P(s_out = s_in) / 2``.

    scores_in: (N_in,), scores_out: (N_out,) real scores, higher = more OOD. Equals
    ``sklearn.metrics.roc_auc_score`` with OOD labelled 1.
    """
    return _auroc(*_staircase(*_checked_scores(scores_in, scores_out)))


def aupr(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """Area under the precision-recall curve with OOD positive, as average precision.

    ``sum_t (R_t - R_t') P_t`` over distinct thresholds, descending (no interpolation); equals
    ``sklearn.metrics.average_precision_score`` with OOD labelled 1.
    """
    return _average_precision(*_staircase(*_checked_scores(scores_in, scores_out)))


def aupr_in(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """Average precision with in-distribution as the positive class (lower score = more in)."""
    return _average_precision(*_staircases(*_checked_scores(scores_in, scores_out))[1])


def fpr_at_tpr(scores_in: torch.Tensor, scores_out: torch.Tensor, tpr: float = 0.95) -> float:
    """Fraction of in-distribution samples flagged at the highest threshold reaching ``tpr``.

    The threshold is the largest score ``t`` whose true-positive rate (OOD samples with score
    >= t) is at least ``tpr``, in (0, 1]; equals ``fpr[argmax(tpr_curve >= tpr)]`` on
    ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
    """
    tpr = check_float("tpr", tpr, minimum=0.0, maximum=1.0, min_inclusive=False)
    return _fpr_at_tpr(*_staircase(*_checked_scores(scores_in, scores_out)), tpr)


def fpr_at_95_tpr(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """``fpr_at_tpr`` at 95% TPR: the usual "FPR95" of OOD detection papers."""
    return fpr_at_tpr(scores_in, scores_out, 0.95)


def ood_scores(member_probs: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample OOD score, higher = more OOD: (M, B, K) member probabilities -> (B,) float64.

    kind: one of ``OOD_SCORES``. "msp" is ``1 - max_k mean_m p_m[k]``; "entropy" is
    ``H(mean_m p_m)``; "mutual_information" and "variation_ratio" as in ``metrics.uncertainty``.
    """
    kind = check_choice("kind", kind, OOD_SCORES)
    probs = check_probabilities("member_probs", member_probs, ndim=3)
    return _score_table(probs, probs.mean(0), _entropy(probs), probs.argmax(-1))[kind]


def _score_table(probs, mean_probs, member_entropy, member_votes) -> dict[str, torch.Tensor]:
    """Every kind of ``OOD_SCORES`` from float64 (M, B, K) probs, their (B, K) mean, (M, B)
    member entropies and (M, B) member argmaxes -> {kind: (B,)} (no checks)."""
    entropy_of_mean = _entropy(mean_probs)
    return {
        "msp": 1 - mean_probs.max(-1).values,
        "entropy": entropy_of_mean,
        "mutual_information": _mutual_information(entropy_of_mean, member_entropy.mean(0)),
        "variation_ratio": _variation_ratio(member_votes, probs.shape[-1]),
    }


def _checked_scores(scores_in, scores_out) -> tuple[torch.Tensor, torch.Tensor]:
    scores_in = check_scores("scores_in", scores_in)
    scores_out = check_scores("scores_out", scores_out).to(scores_in.device)
    return scores_in, scores_out


def _staircase(negatives: torch.Tensor, positives: torch.Tensor):
    """Cumulative (true, false) positive counts at each distinct threshold, descending.

    negatives, positives: (N_neg,), (N_pos,) float64 scores, higher = more positive. Returns two
    int64 tensors (T,), T = number of distinct scores; the last entries are N_pos and N_neg.
    """
    return _staircases(negatives, positives)[0]


def _staircases(negatives: torch.Tensor, positives: torch.Tensor):
    """Both staircases from one sort: ``_staircase(negatives, positives)`` and the mirrored one
    with the negatives as the positive class and lower scores as more positive (that is
    ``_staircase(-positives, -negatives)``)."""
    scores = torch.cat([positives, negatives])
    is_positive = torch.zeros(scores.numel(), dtype=torch.long, device=scores.device)
    is_positive[: positives.numel()] = 1
    sorted_scores, order = torch.sort(scores)
    # Counts at or below each distinct score, ascending: read at the last of each tie block.
    last_of_block = torch.ones_like(sorted_scores, dtype=torch.bool)
    last_of_block[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    positives_at_or_below = is_positive[order].cumsum(0)[last_of_block]
    samples_at_or_below = last_of_block.nonzero().squeeze(1) + 1
    negatives_at_or_below = samples_at_or_below - positives_at_or_below
    high = (_at_or_above(positives_at_or_below), _at_or_above(negatives_at_or_below))
    return high, (negatives_at_or_below, positives_at_or_below)


def _at_or_above(at_or_below: torch.Tensor) -> torch.Tensor:
    """Counts at or below each distinct score, ascending -> counts at or above, descending."""
    below = torch.cat([at_or_below.new_zeros(1), at_or_below[:-1]])
    return (at_or_below[-1] - below).flip(0)


def _auroc(true_pos: torch.Tensor, false_pos: torch.Tensor) -> float:
    # Trapezoids between consecutive staircase points, starting at (0, 0); a tie block is one
    # diagonal step, which is the "half credit for ties" of the Mann-Whitney statistic. Twice
    # the area is an exact integer.
    tp_before = torch.cat([true_pos.new_zeros(1), true_pos[:-1]])
    fp_before = torch.cat([false_pos.new_zeros(1), false_pos[:-1]])
    twice_area = ((false_pos - fp_before) * (true_pos + tp_before)).sum()
    return (twice_area.double() / (2.0 * true_pos[-1].double() * false_pos[-1].double())).item()


def _average_precision(true_pos: torch.Tensor, false_pos: torch.Tensor) -> float:
    tp_before = torch.cat([true_pos.new_zeros(1), true_pos[:-1]])
    precision = true_pos.double() / (true_pos + false_pos).double()
    recall_step = (true_pos - tp_before).double() / true_pos[-1].double()
    return (recall_step * precision).sum().item()


def _fpr_at_tpr(true_pos: torch.Tensor, false_pos: torch.Tensor, tpr: float) -> float:
    reached = true_pos.double() / true_pos[-1].double() >= tpr
    first = int(reached.to(torch.uint8).argmax())
    return (false_pos[first].double() / false_pos[-1].double()).item()
