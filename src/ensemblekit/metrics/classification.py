"""Classification metrics of a (mean) predictive distribution: accuracy, NLL, Brier score.

Inputs are probabilities ``probs`` of shape (B, K) -- for an ensemble, the mean of the member
probabilities, ``member_probs.mean(0)`` -- and integer labels of shape (B,). Results are Python
floats computed in float64.
"""

from __future__ import annotations

import torch

from ._inputs import check_labels, check_probabilities

#: Probabilities are floored here before a log: float64 machine epsilon, the floor scikit-learn's
#: ``log_loss`` uses for float64 input. It turns a zero probability into a finite penalty of
#: -log(2.2e-16) = 36.04 nats instead of infinity.
PROBABILITY_FLOOR = torch.finfo(torch.float64).eps


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose argmax class equals the label (ties: the lowest class index).

    probs: (B, K) probabilities; labels: (B,) integers in [0, K).
    """
    probs, labels = _checked(probs, labels)
    return _top_label(probs)[1].eq(labels).double().mean().item()


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood ``mean_b -log(max(p[b, y_b], PROBABILITY_FLOOR))`` in nats.

    probs: (B, K) probabilities; labels: (B,) integers in [0, K).
    """
    return nll_per_sample(probs, labels).mean().item()


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Multi-class Brier score ``mean_b sum_k (p[b, k] - onehot(y_b)[k])**2``, in [0, 2].

    probs: (B, K) probabilities; labels: (B,) integers in [0, K).
    """
    return brier_per_sample(probs, labels).mean().item()


def nll_per_sample(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example negative log-likelihood ``-log(max(p[b, y_b], PROBABILITY_FLOOR))`` in nats.

    probs: (B, K) probabilities; labels: (B,) integers in [0, K). Returns (B,) float64;
    :func:`nll` is its mean.
    """
    probs, labels = _checked(probs, labels)
    return _nll_per_sample(probs, labels)


def brier_per_sample(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example Brier score ``sum_k (p[b, k] - onehot(y_b)[k])**2``, in [0, 2].

    probs: (B, K) probabilities; labels: (B,) integers in [0, K). Returns (B,) float64;
    :func:`brier` is its mean.
    """
    probs, labels = _checked(probs, labels)
    return _brier_per_sample(probs, labels)


def _top_label(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K) -> confidence (B,) = max probability, prediction (B,) = its lowest class index."""
    return probs.max(dim=-1)


def _nll_per_sample(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """:func:`nll_per_sample` without the checks (the streaming accumulator's inner loop)."""
    true_prob = probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return -true_prob.clamp(min=PROBABILITY_FLOOR).log()


def _brier_per_sample(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """:func:`brier_per_sample` without the checks (the streaming accumulator's inner loop).

    Expanded as ``sum_k p_k**2 - 2 p_y + 1`` so that no (B, K) one-hot tensor is built.
    """
    true_prob = probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return probs.square().sum(-1) - 2 * true_prob + 1


def _checked(probs, labels) -> tuple[torch.Tensor, torch.Tensor]:
    probs = check_probabilities("probs", probs, ndim=2)
    labels = check_labels("labels", labels, n_samples=probs.shape[0], n_classes=probs.shape[1])
    return probs, labels.to(probs.device)
