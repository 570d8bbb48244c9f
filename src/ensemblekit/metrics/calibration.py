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

from .._validation import check_finite, check_int, check_tensor
from .classification import _checked, _top_label


def ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error ``sum_b (n_b / n) |acc_b - conf_b|`` over equal-width bins."""
    bins = _equal_width_bins(*confidence_and_correct(probs, labels), _bin_count(n_bins))
    return _expected_gap(*bins[1:])


def adaptive_ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE over equal-mass bins: samples sorted by confidence split into ``n_bins`` runs.

    Run sizes differ by at most one (the first ``n % n_bins`` runs get the extra sample, as
    ``numpy.array_split``); equal confidences keep their input order, so ties that straddle a
    run boundary are split deterministically.
    """
    confidence, correct = confidence_and_correct(probs, labels)
    return _adaptive_expected_gap(confidence, correct, _bin_count(n_bins))


def mce(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Maximum calibration error ``max_b |acc_b - conf_b|`` over non-empty equal-width bins."""
    bins = _equal_width_bins(*confidence_and_correct(probs, labels), _bin_count(n_bins))
    return _maximum_gap(*bins[1:])


def reliability_bins(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15
) -> dict[str, torch.Tensor]:
    """What a reliability diagram draws, per equal-width bin.

    Returns a dict of tensors: ``"edges"`` (n_bins + 1,) bin edges, ``"count"`` (n_bins,)
    int64 samples per bin, ``"accuracy"`` and ``"confidence"`` (n_bins,) float64 means per bin
    (0.0 in an empty bin: mask with ``count > 0``).
    """
    bins = _equal_width_bins(*confidence_and_correct(probs, labels), _bin_count(n_bins))
    return _reliability(*bins)


def confidence_and_correct(probs: torch.Tensor,
                           labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-label confidence ``max_k p[b, k]`` and correctness ``argmax_k p[b, k] == y_b``.

    probs: (B, K) probabilities; labels: (B,) integers in [0, K). Returns the confidence (B,)
    float64 and the correctness (B,) bool (ties: the lowest class index is the prediction);
    the mean of the correctness is :func:`~ensemblekit.metrics.accuracy`.
    """
    probs, labels = _checked(probs, labels)
    confidence, prediction = _top_label(probs)
    return confidence, prediction.eq(labels)


def calibration_gaps(confidence: torch.Tensor, correct: torch.Tensor,
                     n_bins: int = 15) -> torch.Tensor:
    """Each example's signed calibration gap, placed in its equal-width confidence bin.

    ``confidence`` (N,) or (N, J): top-label confidences in [0, 1] of N examples (J sets of
    the same examples, e.g. corrupted copies); ``correct``: the same shape, bool. Returns
    float64 ``gaps`` of shape (N, n_bins) or (N, J, n_bins) with ``gaps[n, j, b] =
    correct[n, j] - confidence[n, j]`` when that confidence falls in bin ``b`` (the module's
    bins) and 0 elsewhere, so that set j's ECE is ``sum_b |sum_n gaps[n, j, b]| / N`` and,
    with example weights ``w`` (N,), ``sum_b |w @ gaps[:, j, b]| / sum(w)``: one matrix
    product gives the ECE of every weighted resample (the bootstrap's use).
    """
    confidence = check_tensor("confidence", confidence, ndim=(1, 2))
    if not confidence.is_floating_point():
        raise ValueError(f"confidence must be a floating-point tensor, got dtype "
                         f"{confidence.dtype}")
    check_finite("confidence", confidence)
    if confidence.numel() and not bool(((confidence >= 0) & (confidence <= 1)).all()):
        raise ValueError(f"confidence must lie in [0, 1], got values from "
                         f"{confidence.min().item():.6g} to {confidence.max().item():.6g}")
    correct = check_tensor("correct", correct)
    if correct.shape != confidence.shape:
        raise ValueError(f"correct must have the shape of confidence {tuple(confidence.shape)},"
                         f" got {tuple(correct.shape)}")
    n_bins = _bin_count(n_bins)
    one_set = confidence.ndim == 1
    if one_set:
        confidence, correct = confidence.unsqueeze(1), correct.unsqueeze(1)
    confidence = confidence.double().contiguous()  # bucketize copies strided input
    _, index = _bin_index(confidence, n_bins)
    n, sets = confidence.shape
    gaps = torch.zeros(n, sets * n_bins, dtype=torch.float64, device=confidence.device)
    columns = index + torch.arange(sets, device=confidence.device).unsqueeze(0) * n_bins
    gaps.scatter_(1, columns, correct.double() - confidence)
    gaps = gaps.view(n, sets, n_bins)
    return gaps[:, 0] if one_set else gaps


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
