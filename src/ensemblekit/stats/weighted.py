"""Metrics of weighted example sets: every bootstrap replicate of a metric at once.

Each metric here is a :class:`~ensemblekit.stats.bootstrap.Metric`: ``weighted(values,
labels, weights (B, N)) -> (B,)`` float64, the metric of each of B weighted copies of the N
examples (a bootstrap replicate gives example n the weight "how often it was drawn"). The
per-example parts come from the public functions of :mod:`ensemblekit.metrics`, so that unit
weights give exactly the library's metric: a weighted mean of a per-example value (accuracy,
NLL, Brier, a per-sample diversity measure) is ``w @ v / sum(w)``; an ECE is ``sum_b |w @
gaps_b| / sum(w)`` over :func:`~ensemblekit.metrics.calibration_gaps`; AUROC is the weighted
Mann-Whitney statistic; CKA the weighted linear CKA of two Gram matrices.
"""

from __future__ import annotations

import torch

from ..metrics import brier_per_sample, calibration_gaps, confidence_and_correct, nll_per_sample
from .bootstrap import Metric

#: The equal-width bins of every ECE here (as :func:`ensemblekit.metrics.ece`).
ECE_BINS = 15


def _weighted_mean(per_example: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return weights @ per_example.double() / weights.sum(1)


def _accuracy(probs, labels, weights):
    return _weighted_mean(confidence_and_correct(probs, labels)[1], weights)


def _nll(probs, labels, weights):
    return _weighted_mean(nll_per_sample(probs, labels), weights)


def _brier(probs, labels, weights):
    return _weighted_mean(brier_per_sample(probs, labels), weights)


def _mean_ece_over_sets(confidence, correct, weights, n_bins=ECE_BINS):
    """ECE = sum_bins |sum_n w_n (correct_n - conf_n)| / sum_n w_n of each set, mean over
    sets: one matrix product for every replicate, set and bin."""
    sets = confidence.shape[1]
    gaps = calibration_gaps(confidence, correct, n_bins).flatten(1)  # (N, sets * n_bins)
    per_bin = (weights @ gaps).abs()
    return per_bin.view(-1, sets, n_bins).sum(-1).mean(1) / weights.sum(1)


def _ece(probs, labels, weights):
    confidence, correct = confidence_and_correct(probs, labels)
    return _mean_ece_over_sets(confidence.unsqueeze(1), correct.unsqueeze(1), weights)


def _shift_ece(values, labels, weights):
    confidence, correct = values
    return _mean_ece_over_sets(confidence, correct, weights)


def _auroc(scores, is_ood, weights):
    """Weighted Mann-Whitney AUROC, OOD positive: ``sum_{i in, j out} w_i w_j ([s_j > s_i]
    + [s_j = s_i] / 2) / (sum w_in * sum w_out)``, from one sort of the scores."""
    scores = scores.double()
    is_ood = torch.as_tensor(is_ood, dtype=torch.bool)
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    new_block = torch.ones_like(sorted_scores, dtype=torch.bool)
    new_block[1:] = sorted_scores[1:] != sorted_scores[:-1]
    block = torch.empty_like(order)
    block[order] = new_block.cumsum(0) - 1  # tie block of each example, ascending score
    n_blocks = int(new_block.sum())
    weights_in = weights * (~is_ood).double()
    weights_out = weights * is_ood.double()
    in_per_block = weights.new_zeros(weights.shape[0], n_blocks).index_add_(1, block, weights_in)
    out_per_block = weights.new_zeros(weights.shape[0], n_blocks).index_add_(1, block,
                                                                             weights_out)
    total_out = out_per_block.sum(1, keepdim=True)
    out_above = total_out - out_per_block.cumsum(1)
    pairs = (in_per_block * (out_above + 0.5 * out_per_block)).sum(1)
    return pairs / (in_per_block.sum(1) * total_out.squeeze(1))


def _per_sample_mean(values, labels, weights):
    return _weighted_mean(values, weights)


def weighted_cka(gram_x: torch.Tensor, gram_y: torch.Tensor, weights: torch.Tensor
                 ) -> torch.Tensor:
    """Linear CKA of two representations on every weighted resample: ``(B,)`` float64.

    ``gram_x = X X^T`` and ``gram_y = Y Y^T`` ``(N, N)`` (uncentred); ``weights (B, N)``. With
    ``p = w / sum w``, ``a = K p`` and ``alpha = p^T K p``, the weighted HSIC of K and L is
    ``p^T (K o L) p - 2 sum_i p_i a_i b_i + alpha beta`` (centring with the weighted mean,
    expanded), and CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). Unit weights give
    :func:`ensemblekit.metrics.linear_cka`.
    """
    p = weights / weights.sum(1, keepdim=True)
    a, b = p @ gram_x, p @ gram_y

    def hsic(k, a_k, l_, b_l):
        return ((p @ (k * l_)) * p).sum(1) - 2 * (p * a_k * b_l).sum(1) \
            + (p * a_k).sum(1) * (p * b_l).sum(1)

    cross = hsic(gram_x, a, gram_y, b)
    return cross / (hsic(gram_x, a, gram_x, a) * hsic(gram_y, b, gram_y, b)).sqrt()


def _pairwise_cka(grams, labels, weights):
    members = grams.shape[0]
    values = [weighted_cka(grams[i], grams[j], weights)
              for i in range(members) for j in range(i + 1, members)]
    return torch.stack(values).mean(0)


#: Accuracy of the mean prediction. values: probabilities ``(N, K)``; labels ``(N,)``.
ACCURACY = Metric("accuracy", True, _accuracy)
#: Negative log-likelihood (floored as :func:`ensemblekit.metrics.nll`); values ``(N, K)``.
NLL = Metric("nll", False, _nll)
#: Brier score; values ``(N, K)``.
BRIER = Metric("brier", False, _brier)
#: ECE with 15 equal-width bins, as :func:`ensemblekit.metrics.ece`; values ``(N, K)``.
ECE = Metric("ece", False, _ece)
#: Mean ECE over J shifted sets of the same N examples (each set's ECE recomputed on the
#: resample); values ``(confidence (N, J), correct (N, J) bool)``, labels unused (any (N,)).
SHIFT_ECE = Metric("shift_ece", False, _shift_ece)
#: AUROC with OOD positive, as :func:`ensemblekit.metrics.auroc`; values: scores ``(N,)``
#: (in- and out-of-distribution together, higher = more OOD), labels ``(N,)`` bool, True =
#: OOD. Resample with ``strata=labels``.
AUROC = Metric("auroc", True, _auroc)
#: Mean over examples of a per-example measure (disagreement, mutual information); values
#: ``(N,)``, labels unused.
PER_SAMPLE_MEAN = Metric("mean", False, _per_sample_mean)
#: Mean linear CKA over member pairs; values: the members' Gram matrices ``(M, N, N)``,
#: labels unused (any (N,)).
PAIRWISE_CKA = Metric("cka", True, _pairwise_cka)
