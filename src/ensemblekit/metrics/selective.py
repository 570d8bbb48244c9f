"""Selective prediction: risk-coverage curves and their areas, exact, from the sorted scores.

A selective classifier accepts the inputs whose ``confidence`` (N,) is at least a threshold and
abstains on the rest; ``correct`` (N,) bool says which predictions are right. Accepting the
``i`` most confident samples gives coverage ``i / N``, selective risk ``E_i / i`` and
generalized risk ``E_i / N`` (Traub et al., 2024), ``E_i`` being the errors among them.

Ties: samples with equal confidence cannot be separated by any threshold. Every quantity here is
its expectation over a uniformly random order inside each tie block (the same rule as the
half credit for ties of ``auroc``): inside a block of ``n`` samples with ``e`` errors, each
further accepted sample adds ``e / n`` expected errors. The result does not depend on the input
order, and without ties it is the plain per-sample value.

Conventions (N points, no threshold grid, no interpolation):

- ``aurc``: the mean selective risk over the N coverages ``i / N``, ``(1/N) sum_i E_i / i``
  (Geifman et al., 2019; the rectangle rule). TorchUncertainty's ``AURC`` integrates the same
  N points with trapezoids and divides by ``1 - 1/N``: the two differ by O(1/N).
- ``e_aurc``: ``aurc`` minus the same sum for the oracle order (every correct sample more
  confident than every error), computed exactly for this N, not with the large-N formula
  ``r + (1 - r) log(1 - r)``.
- ``augrc``: the area under the generalized risk curve through the origin and the N points
  ``(i/N, E_i/N)``, trapezoids; equal to ``(1 - AUROC_f) acc (1 - acc) + (1 - acc)^2 / 2``,
  AUROC_f being the AUROC of ``confidence`` at telling correct from wrong (Traub et al., 2024).
  TorchUncertainty's ``AUGRC`` leaves out the first segment and divides by ``1 - 1/N``.
- ``risk_at_coverage(c)``: the selective risk of the ``i`` most confident samples, ``i`` the
  smallest count with ``i / N >= c`` (TorchUncertainty: ``ceil(c N)``).
- ``coverage_at_risk(r)``: the largest ``i / N`` with selective risk ``E_i / i <= r``; 0.0 when
  even the most confident sample alone is riskier (only rejecting everything reaches ``r``).
"""

from __future__ import annotations

import torch

from .._validation import check_float, check_tensor
from ._inputs import check_scores

#: Coverages and risks that ``selective_summary`` reports.
SELECTIVE_COVERAGES = (0.8, 0.9, 0.95)
SELECTIVE_RISKS = (0.01, 0.02, 0.05)


def risk_coverage_curve(
    confidence: torch.Tensor, correct: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The risk-coverage curve at every distinct confidence threshold, for plotting.

    confidence (N,) real, higher = more confident; correct (N,) bool. Returns float64
    ``(coverage, risk, thresholds)``, each (T,) with T the number of distinct confidences:
    thresholds descending, coverage ascending to 1; point t accepts the samples with
    ``confidence >= thresholds[t]``. The generalized risk is ``risk * coverage``.
    """
    scores, errors = _checked(confidence, correct)
    sorted_scores, order = torch.sort(scores, descending=True)
    block_end = _block_ends(sorted_scores)
    accepted = (block_end.nonzero().squeeze(1) + 1).double()
    cumulative_errors = errors[order].cumsum(0)[block_end]
    return accepted / scores.numel(), cumulative_errors / accepted, sorted_scores[block_end]


def aurc(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """Area under the risk-coverage curve: ``(1/N) sum_{i=1..N} E_i / i`` (module docstring).

    confidence (N,) real, higher = more confident; correct (N,) bool. Lower is better.
    """
    return _aurc(_expected_errors(*_checked(confidence, correct)))


def e_aurc(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """Excess AURC: ``aurc`` minus the AURC of the oracle order (module docstring); >= 0."""
    scores, errors = _checked(confidence, correct)
    return _aurc(_expected_errors(scores, errors)) - _aurc(_oracle_errors(errors))


def augrc(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """Area under the generalized risk-coverage curve ``(i/N, E_i/N)`` (Traub et al., 2024).

    confidence (N,) real, higher = more confident; correct (N,) bool. Lower is better.
    """
    return _augrc(_expected_errors(*_checked(confidence, correct)))


def risk_at_coverage(confidence: torch.Tensor, correct: torch.Tensor, coverage: float) -> float:
    """Selective risk when the most confident fraction ``coverage`` in (0, 1] is accepted."""
    coverage = check_float("coverage", coverage, minimum=0.0, maximum=1.0, min_inclusive=False)
    return _risk_at_coverage(_expected_errors(*_checked(confidence, correct)), coverage)


def coverage_at_risk(confidence: torch.Tensor, correct: torch.Tensor, risk: float) -> float:
    """Largest coverage whose selective risk is at most ``risk`` in [0, 1] (0.0 if none)."""
    risk = check_float("risk", risk, minimum=0.0, maximum=1.0)
    return _coverage_at_risk(_expected_errors(*_checked(confidence, correct)), risk)


def selective_summary(confidence: torch.Tensor, correct: torch.Tensor) -> dict[str, float]:
    """Every metric of this module from one sort, as a flat dict of Python floats.

    Keys: ``"aurc"``, ``"e_aurc"``, ``"augrc"``, ``"risk_at_{c}_coverage"`` for ``c`` = 80,
    90, 95 and ``"coverage_at_{r}_risk"`` for ``r`` = 1, 2, 5 (percent; ``SELECTIVE_COVERAGES``
    and ``SELECTIVE_RISKS``).
    """
    scores, errors = _checked(confidence, correct)
    return _summary(scores, errors)


def risk_key(coverage: float) -> str:
    """The ``selective_summary`` key of the risk at ``coverage``: 0.8 -> "risk_at_80_coverage"."""
    return f"risk_at_{100 * coverage:g}_coverage"


def coverage_key(risk: float) -> str:
    """The ``selective_summary`` key of the coverage at ``risk``: 0.01 -> "coverage_at_1_risk"."""
    return f"coverage_at_{100 * risk:g}_risk"


def _summary(scores: torch.Tensor, errors: torch.Tensor) -> dict[str, float]:
    """``selective_summary`` on checked float64 scores and 0/1 errors (no checks)."""
    expected = _expected_errors(scores, errors)
    curve_area = _aurc(expected)
    summary = {
        "aurc": curve_area,
        "e_aurc": curve_area - _aurc(_oracle_errors(errors)),
        "augrc": _augrc(expected),
    }
    summary.update({risk_key(c): _risk_at_coverage(expected, c) for c in SELECTIVE_COVERAGES})
    summary.update({coverage_key(r): _coverage_at_risk(expected, r) for r in SELECTIVE_RISKS})
    return summary


def _checked(confidence, correct) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 scores (N,) and float64 0/1 errors (N,) on the same device."""
    scores = check_scores("confidence", confidence)
    check_tensor("correct", correct, ndim=1)
    if correct.dtype != torch.bool:
        raise ValueError(
            f"correct must be a bool tensor (True where the prediction is right), got dtype "
            f"{correct.dtype}; pass e.g. predictions == labels"
        )
    if correct.numel() != scores.numel():
        raise ValueError(
            f"correct must have one entry per confidence: expected shape ({scores.numel()},), "
            f"got {tuple(correct.shape)}"
        )
    return scores, (~correct.detach()).to(device=scores.device, dtype=torch.float64)


def _block_ends(sorted_scores: torch.Tensor) -> torch.Tensor:
    """(N,) bool: True at the last sample of each tie block of sorted scores."""
    last = torch.ones_like(sorted_scores, dtype=torch.bool)
    last[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    return last


def _expected_errors(scores: torch.Tensor, errors: torch.Tensor) -> torch.Tensor:
    """(N,) float64: expected errors ``E_i`` among the i most confident, i = 1..N, with the
    errors of a tie block spread evenly over its positions (module docstring)."""
    sorted_scores, order = torch.sort(scores, descending=True)
    cumulative = errors[order].cumsum(0)
    block_end = _block_ends(sorted_scores)
    last_index = block_end.nonzero().squeeze(1)
    sizes = torch.diff(last_index, prepend=last_index.new_tensor([-1]))
    at_end = cumulative[block_end]
    at_start = torch.cat([at_end.new_zeros(1), at_end[:-1]])
    per_sample = ((at_end - at_start) / sizes).repeat_interleave(sizes)
    start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]]).repeat_interleave(sizes)
    position = torch.arange(1, scores.numel() + 1, device=scores.device)
    return at_start.repeat_interleave(sizes) + (position - start) * per_sample


def _oracle_errors(errors: torch.Tensor) -> torch.Tensor:
    """``E_i`` of the oracle order: every correct sample first, then the errors."""
    n_correct = errors.numel() - errors.sum()
    position = torch.arange(1, errors.numel() + 1, device=errors.device, dtype=torch.float64)
    return (position - n_correct).clamp(min=0)


def _accepted(expected: torch.Tensor) -> torch.Tensor:
    return torch.arange(1, expected.numel() + 1, device=expected.device, dtype=torch.float64)


def _aurc(expected: torch.Tensor) -> float:
    return (expected / _accepted(expected)).mean().item()


def _augrc(expected: torch.Tensor) -> float:
    n = expected.numel()
    # Trapezoids through (0, 0): sum_i (E_{i-1} + E_i) / 2 = sum_i E_i - E_N / 2, over N^2.
    return ((expected.sum() - expected[-1] / 2) / (n * n)).item()


def _risk_at_coverage(expected: torch.Tensor, coverage: float) -> float:
    accepted = _accepted(expected)
    index = int(torch.searchsorted(accepted / expected.numel(), coverage))  # first i/N >= c
    return (expected[index] / accepted[index]).item()


def _coverage_at_risk(expected: torch.Tensor, risk: float) -> float:
    accepted = _accepted(expected)
    admissible = (expected / accepted <= risk).nonzero()
    return 0.0 if admissible.numel() == 0 else (accepted[admissible[-1, 0]] / accepted[-1]).item()
