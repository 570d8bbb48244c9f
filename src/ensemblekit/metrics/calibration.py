"""Top-label calibration: ECE, adaptive (equal-mass) ECE, MCE and reliability-diagram bins.

The confidence of a sample is the maximum of its probability vector and it is correct when the
argmax (lowest index on ties) equals the label. Equal-width bin ``b`` of ``n_bins`` holds the
confidences in ``[b / n_bins, (b + 1) / n_bins)``; the last bin is closed, so a confidence of
exactly 1.0 lands in it (not in a phantom extra bin).

Inputs: ``probs`` (B, K) -- for an ensemble the mean member probability -- and labels (B,).
Scalars come back as Python floats, computed in float64.
"""

from __future__ import annotations

import torch

from .._validation import check_int
from .classification import _checked, _top_label


def ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error ``sum_b (n_b / n) |acc_b - conf_b|`` over equal-width bins."""
    bins = _equal_width_bins(*_confidence_and_correct(probs, labels), _bin_count(n_bins))
    return _expected_gap(*bins[1:])


def adaptive_ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE over equal-mass bins: samples sorted by confidence split into ``n_bins`` runs.

    Run sizes differ by at most one (the first ``n % n_bins`` runs get the extra sample, as
    ``numpy.array_split``); equal confidences keep their input order, so ties that straddle a
    run boundary are split deterministically.
    """
    confidence, correct = _confidence_and_correct(probs, labels)
    return _adaptive_expected_gap(confidence, correct, _bin_count(n_bins))


def mce(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Maximum calibration error ``max_b |acc_b - conf_b|`` over non-empty equal-width bins."""
    bins = _equal_width_bins(*_confidence_and_correct(probs, labels), _bin_count(n_bins))
    return _maximum_gap(*bins[1:])


def reliability_bins(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15
) -> dict[str, torch.Tensor]:
    """What a reliability diagram draws, per equal-width bin.

    Returns a dict of tensors: ``"edges"`` (n_bins + 1,) bin edges, ``"count"`` (n_bins,)
    int64 samples per bin, ``"accuracy"`` and ``"confidence"`` (n_bins,) float64 means per bin
    (0.0 in an empty bin: mask with ``count > 0``).
    """
    bins = _equal_width_bins(*_confidence_and_correct(probs, labels), _bin_count(n_bins))
    return _reliability(*bins)


def _confidence_and_correct(probs, labels) -> tuple[torch.Tensor, torch.Tensor]:
    probs, labels = _checked(probs, labels)
    confidence, prediction = _top_label(probs)
    return confidence, prediction.eq(labels)


def _bin_count(n_bins) -> int:
    return check_int("n_bins", n_bins, minimum=1)


def _equal_width_bins(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int):
    """(N,) float64 confidences, (N,) bool -> edges, count, correct_sum, confidence_sum."""
    edges, index = _bin_index(confidence, n_bins)
    return (edges, *_bin_sums(index, confidence, correct, n_bins))


def _bin_index(confidence: torch.Tensor, n_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 confidences (any shape) -> edges (n_bins + 1,) and each one's equal-width bin."""
    # i / n_bins rounds each edge correctly (linspace can be off by an ulp at an edge).
    edges = torch.arange(n_bins + 1, dtype=torch.float64, device=confidence.device) / n_bins
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp_(0, n_bins - 1)
    return edges, index


def _bin_sums(index: torch.Tensor, confidence: torch.Tensor, correct: torch.Tensor, n_bins: int):
    count = torch.bincount(index, minlength=n_bins)
    correct_sum = torch.bincount(index, weights=correct.to(torch.float64), minlength=n_bins)
    confidence_sum = torch.bincount(index, weights=confidence, minlength=n_bins)
    return count, correct_sum, confidence_sum


def _expected_gap(count, correct_sum, confidence_sum) -> float:
    # sum_b (n_b / n) |correct_sum_b / n_b - confidence_sum_b / n_b|, without dividing by n_b.
    return ((correct_sum - confidence_sum).abs().sum() / count.sum()).item()


def _maximum_gap(count, correct_sum, confidence_sum) -> float:
    filled = count > 0
    return ((correct_sum[filled] - confidence_sum[filled]).abs() / count[filled]).max().item()


def _adaptive_expected_gap(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int) -> float:
    index = _equal_mass_index(confidence, n_bins)
    return _expected_gap(*_bin_sums(index, confidence, correct, n_bins))


def _equal_mass_index(values: torch.Tensor, n_bins: int) -> torch.Tensor:
    """(N,) values -> (N,) int64 equal-mass bin of each: sorted runs whose sizes differ by at
    most one (the first ``N % n_bins`` get the extra one); ties keep their input order."""
    n = values.numel()
    sizes = torch.full((n_bins,), n // n_bins, dtype=torch.long, device=values.device)
    sizes[: n % n_bins] += 1
    run_of_rank = torch.repeat_interleave(torch.arange(n_bins, device=values.device), sizes)
    index = torch.empty_like(run_of_rank)
    index[torch.argsort(values, stable=True)] = run_of_rank
    return index


def _reliability(edges, count, correct_sum, confidence_sum) -> dict[str, torch.Tensor]:
    safe_count = count.clamp(min=1).to(torch.float64)
    return {
        "edges": edges,
        "count": count,
        "accuracy": correct_sum / safe_count,
        "confidence": confidence_sum / safe_count,
    }
