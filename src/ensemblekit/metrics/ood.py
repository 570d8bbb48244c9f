"""Out-of-distribution detection: exact, rank-based AUROC, AUPR and FPR at 95% TPR.

Convention: OOD samples are the positive class and a higher score means "more OOD". Every
metric is computed from the exact ROC / precision-recall staircase over the distinct score
values (no threshold grid): a threshold ``t`` flags the samples with score >= t, and tied
scores always move together. Counts are integers, so AUROC is exact up to one final division.

Scores come from ``ood_scores(member_probs, kind)`` (or from member logits with
``from_logits=True``); each kind is named for exactly what it is, all with higher = more OOD:

- from probabilities: ``"msp"`` = 1 - max of the mean probability, ``"entropy"`` = entropy of
  the mean probability (not the mean of member entropies), ``"mutual_information"``,
  ``"variation_ratio"``;
- from logits only (``LOGIT_OOD_SCORES``): ``"max_logit"`` = minus the largest mean member
  logit (MaxLogit, Hendrycks et al. 2022), ``"energy"`` = ``-logsumexp`` of the mean member
  logits (Liu et al. 2020, temperature 1), ``"energy_members"`` = the mean over members of
  each member's ``-logsumexp``.

``DISAGREEMENT_OOD_SCORES`` (mutual information, variation ratio) measure how the members
differ: with one member they are constant (0 up to rounding), so ``evaluate_predictions``
reports their detection metrics as None, never as a number.
"""

from __future__ import annotations

import torch

from .._validation import check_choice, check_flag, check_float
from ._inputs import check_logits, check_probabilities, check_scores
from .uncertainty import _entropy, _mutual_information, _variation_ratio

#: The score kinds ``ood_scores`` knows, in the order reports list them.
OOD_SCORES = ("msp", "entropy", "mutual_information", "variation_ratio", "max_logit", "energy",
              "energy_members")
#: The kinds that need logits (``ood_scores(..., from_logits=True)``).
LOGIT_OOD_SCORES = ("max_logit", "energy", "energy_members")
#: The kinds that compare members: constant, hence undefined as detectors, for one member.
DISAGREEMENT_OOD_SCORES = ("mutual_information", "variation_ratio")


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


def ood_scores(member_probs: torch.Tensor, kind: str, *, from_logits: bool = False
               ) -> torch.Tensor:
    """Per-sample OOD score, higher = more OOD: (M, B, K) member outputs -> (B,) float64.

    member_probs: member probabilities (M, B, K), or member logits with ``from_logits=True``
    (softmax per member first for the probability kinds). kind: one of ``OOD_SCORES``. "msp" is
    ``1 - max_k mean_m p_m[k]``; "entropy" is ``H(mean_m p_m)``; "mutual_information" and
    "variation_ratio" as in ``metrics.uncertainty``; with ``z_bar = mean_m z_m``, "max_logit" is
    ``-max_k z_bar[k]``, "energy" ``-logsumexp_k z_bar[k]`` and "energy_members"
    ``mean_m -logsumexp_k z_m[k]`` (these three need logits).
    """
    kind = check_choice("kind", kind, OOD_SCORES)
    if not check_flag("from_logits", from_logits):
        if kind in LOGIT_OOD_SCORES:
            raise ValueError(
                f"kind {kind!r} is a score of logits, not probabilities: pass member logits "
                "(M, B, K) with from_logits=True"
            )
        probs = check_probabilities("member_probs", member_probs, ndim=3)
        return _probability_scores(probs, probs.mean(0), _entropy(probs), probs.argmax(-1))[kind]
    logits = check_logits("member_probs", member_probs).to(torch.float64)
    if kind in LOGIT_OOD_SCORES:
        return _logit_scores(logits)[kind]
    probs = torch.softmax(logits, -1)
    return _probability_scores(probs, probs.mean(0), _entropy(probs), probs.argmax(-1))[kind]


def _score_table(logits, probs, mean_probs, member_entropy, member_votes
                 ) -> dict[str, torch.Tensor]:
    """Every kind of ``OOD_SCORES`` from float64 (M, B, K) logits and probs, the (B, K) mean
    probability, (M, B) member entropies and (M, B) member argmaxes -> {kind: (B,)} (no checks)."""
    return {**_probability_scores(probs, mean_probs, member_entropy, member_votes),
            **_logit_scores(logits)}


def _logit_scores(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The ``LOGIT_OOD_SCORES`` of float64 member logits (M, B, K) -> {kind: (B,)}."""
    mean_logits = logits.mean(0)
    return {
        "max_logit": -mean_logits.max(-1).values,
        "energy": -torch.logsumexp(mean_logits, -1),
        "energy_members": -torch.logsumexp(logits, -1).mean(0),
    }


def _probability_scores(probs, mean_probs, member_entropy, member_votes
                        ) -> dict[str, torch.Tensor]:
    """The probability kinds of ``OOD_SCORES`` (see ``_score_table``)."""
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
