"""Per-sample uncertainty of an ensemble: total, aleatoric and epistemic parts, vote spread.

Input: member probabilities ``member_probs`` of shape (M, B, K). Output: a float64 tensor (B,)
in nats. With ``H`` the Shannon entropy and ``p_bar = mean_m p_m``:

- predictive entropy ``H(p_bar)`` (total uncertainty), in [0, log K];
- expected entropy ``mean_m H(p_m)`` (aleatoric part);
- mutual information ``H(p_bar) - mean_m H(p_m)`` (epistemic part), >= 0 by Jensen;
- variation ratio ``1 - f / M``, where ``f`` counts the members voting for the most voted class.
"""

from __future__ import annotations

import torch

from ._inputs import check_probabilities

_TINY = torch.finfo(torch.float64).tiny


def predictive_entropy(member_probs: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean prediction ``H(mean_m p_m)``: (M, B, K) -> (B,).

    A single model's (B, K) probabilities are accepted too (its entropy).
    """
    probs = check_probabilities("member_probs", member_probs, ndim=(2, 3))
    return _entropy(probs if probs.ndim == 2 else probs.mean(0))


def expected_entropy(member_probs: torch.Tensor) -> torch.Tensor:
    """Mean of the member entropies ``mean_m H(p_m)``: (M, B, K) -> (B,)."""
    return _entropy(_member_probs(member_probs)).mean(0)


def mutual_information(member_probs: torch.Tensor) -> torch.Tensor:
    """``H(mean_m p_m) - mean_m H(p_m)``: (M, B, K) -> (B,); 0 for identical members."""
    probs = _member_probs(member_probs)
    return _mutual_information(_entropy(probs.mean(0)), _entropy(probs).mean(0))


def variation_ratio(member_probs: torch.Tensor) -> torch.Tensor:
    """``1 - (votes for the modal class) / M`` from member argmaxes: (M, B, K) -> (B,).

    Values lie in {0, 1/M, ..., 1 - 1/M}; a member's vote is its argmax (lowest index on ties).
    """
    probs = _member_probs(member_probs)
    return _variation_ratio(probs.argmax(-1), probs.shape[-1])


def _member_probs(member_probs) -> torch.Tensor:
    return check_probabilities("member_probs", member_probs, ndim=3)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    """(..., K) -> (...) Shannon entropy in nats, with 0 log 0 = 0 (no checks)."""
    # Flooring at the smallest normal float turns 0 * log 0 into 0 * (-708) = 0; this runs
    # several times faster than torch.special.entr / xlogy, whose log is not vectorised.
    terms = probs.clamp(min=_TINY).log_().mul_(probs)
    return -terms.sum(-1)


def _mutual_information(entropy_of_mean: torch.Tensor, mean_entropy: torch.Tensor):
    # Mathematically >= 0; rounding can leave -1e-16, which would read as "negative epistemic".
    return (entropy_of_mean - mean_entropy).clamp_(min=0)


def _variation_ratio(member_votes: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(M, B) member argmaxes -> (B,) variation ratio (no checks)."""
    n_members, n_samples = member_votes.shape
    one_vote = torch.ones(n_samples, n_members, dtype=torch.float64, device=member_votes.device)
    votes = torch.zeros(n_samples, n_classes, dtype=torch.float64, device=member_votes.device)
    votes.scatter_add_(1, member_votes.T, one_vote)
    return 1 - votes.max(-1).values / n_members
