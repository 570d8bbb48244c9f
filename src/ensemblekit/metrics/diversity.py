"""How different the members of an ensemble are, in function space and in parameter space.

Function space: each measure takes member probabilities ``member_probs`` (M, B, K) and returns
an (M, M) float64 matrix whose entry [i, j] averages a per-sample comparison of members i and j
over the B samples. Disagreement, Jensen-Shannon and cosine are symmetric; KL is not.

Parameter space: ``weight_similarity`` compares the members' flattened effective weights, as
returned by the ``member_weights()`` method every ensemble model of the library exposes.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_finite, check_tensor
from ._inputs import check_labels, check_probabilities
from .classification import PROBABILITY_FLOOR, _top_label
from .uncertainty import _entropy

_WEIGHT_COLUMNS = 1 << 20


def pairwise_disagreement(member_probs: torch.Tensor) -> torch.Tensor:
    """Fraction of samples on which the argmaxes of members i and j differ: (M, B, K) -> (M, M).

    Symmetric, zero diagonal, in [0, 1].
    """
    probs = _member_probs(member_probs)
    return _disagreement_counts(probs.argmax(-1)).double() / probs.shape[1]


def normalized_disagreement(member_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Pairwise disagreement divided by the ensemble's error rate: (M, B, K), (B,) -> (M, M).

    The ensemble's prediction is the argmax of ``member_probs.mean(0)``; its error is the
    fraction of samples it gets wrong. An ensemble without errors gives inf (nan on the
    diagonal and where members never disagree), as the ratio is unbounded there.
    """
    probs = _member_probs(member_probs)
    labels = check_labels("labels", labels, n_samples=probs.shape[1], n_classes=probs.shape[2])
    error = _top_label(probs.mean(0))[1].ne(labels.to(probs.device)).double().mean()
    return _disagreement_counts(probs.argmax(-1)).double() / probs.shape[1] / error


def pairwise_kl(member_probs: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence ``KL(p_i || p_j) = sum_k p_i log(p_i / p_j)``: (M, B, K) -> (M, M).

    Row i is the reference member. Not symmetric; zero diagonal; >= 0; in nats. ``p_j`` is
    floored at ``PROBABILITY_FLOOR`` inside the log, so a class that member j rules out
    costs a large but finite amount.
    """
    probs = _member_probs(member_probs)
    floored_log_probs = probs.clamp(min=PROBABILITY_FLOOR).log()
    return _kl_sums(probs, _entropy(probs), floored_log_probs) / probs.shape[1]


def pairwise_js(member_probs: torch.Tensor) -> torch.Tensor:
    """Mean Jensen-Shannon divergence ``H((p_i + p_j) / 2) - (H(p_i) + H(p_j)) / 2``.

    (M, B, K) -> (M, M). Symmetric, zero diagonal, in [0, log 2] nats.
    """
    probs = _member_probs(member_probs)
    return _js_sums(probs, _entropy(probs)) / probs.shape[1]


def pairwise_cosine(member_probs: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of the members' probability vectors: (M, B, K) -> (M, M).

    Per sample ``<p_i, p_j> / (|p_i| |p_j|)``, averaged over samples. Symmetric, ones on the
    diagonal, in [0, 1] (probabilities are non-negative).
    """
    probs = _member_probs(member_probs)
    return _cosine_sums(probs) / probs.shape[1]


def weight_similarity(model_or_weights) -> torch.Tensor:
    """Cosine similarity between the members' flattened effective weights: -> (M, M) float64.

    Accepts a tensor (M, P) with one row per member, or any model exposing
    ``member_weights() -> Tensor (M, P)`` (every ensemble model built by the library does).
    Symmetric with ones on the diagonal; 1 means two members share identical weights.
    """
    if isinstance(model_or_weights, torch.Tensor):
        weights, name = model_or_weights, "weights"
    elif callable(getattr(model_or_weights, "member_weights", None)):
        with torch.no_grad():
            weights = model_or_weights.member_weights()
        name = f"{type(model_or_weights).__name__}.member_weights()"
    else:
        raise TypeError(
            "weight_similarity expects a tensor (M, P) of flattened member weights or a model "
            f"with a member_weights() method, got {type(model_or_weights).__name__}"
        )
    check_tensor(name, weights, ndim=2)
    if weights.numel() == 0 or not weights.is_floating_point():
        raise ValueError(
            f"{name} must be a non-empty floating-point (M, P) tensor, got shape "
            f"{tuple(weights.shape)} and dtype {weights.dtype}"
        )
    weights = check_finite(name, weights.detach())
    # Gram matrix in float64, a slice of columns at a time: a (M, P) float64 copy of a large
    # network would double its memory for nothing.
    gram = weights.new_zeros(weights.shape[0], weights.shape[0], dtype=torch.float64)
    for start in range(0, weights.shape[1], _WEIGHT_COLUMNS):
        piece = weights[:, start : start + _WEIGHT_COLUMNS].to(torch.float64)
        gram += piece @ piece.T
    norms = gram.diagonal().sqrt()
    if bool((norms == 0).any()):
        member = int((norms == 0).nonzero()[0])
        raise ValueError(
            f"{name} row {member} is all zeros: cosine similarity is undefined for a member "
            "without weights"
        )
    similarity = (gram / norms.unsqueeze(1) / norms.unsqueeze(0)).clamp_(-1, 1)
    return similarity.fill_diagonal_(1.0)


def _member_probs(member_probs) -> torch.Tensor:
    return check_probabilities("member_probs", member_probs, ndim=3)


def _off_diagonal_mean(matrix: torch.Tensor) -> float:
    """Mean of the M * (M - 1) off-diagonal entries; nan for a single member (no pairs)."""
    n = matrix.shape[0]
    if n < 2:
        return float("nan")
    return ((matrix.sum() - matrix.diagonal().sum()) / (n * (n - 1))).item()


def _disagreement_counts(member_votes: torch.Tensor) -> torch.Tensor:
    """(M, B) member argmaxes -> (M, M) int64 number of samples where the votes differ."""
    return (member_votes.unsqueeze(1) != member_votes.unsqueeze(0)).sum(-1)


def _kl_sums(
    probs: torch.Tensor, entropy: torch.Tensor, floored_log_probs: torch.Tensor
) -> torch.Tensor:
    """Sums over B of KL(p_i || p_j) -> (M, M) (no checks).

    probs: (M, B, K) float64; entropy: (M, B) their entropies; floored_log_probs: (M, B, K)
    ``log(max(p, PROBABILITY_FLOOR))``.
    """
    n_members = probs.shape[0]
    # sum_b sum_k p_i log p_j for all pairs at once is one (M, B*K) x (B*K, M) product.
    cross = probs.reshape(n_members, -1) @ floored_log_probs.reshape(n_members, -1).T
    sums = -entropy.sum(1, keepdim=True) - cross
    return sums.fill_diagonal_(0.0).clamp_(min=0)


def _js_sums(probs: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
    """(M, B, K) float64 probs, (M, B) their entropies -> (M, M) sums over B of JS(p_i, p_j).

    With ``s = p_i + p_j`` the mixture entropy is ``H(s / 2) = log 2 + H(s) / 2`` (``H`` applied
    to the unnormalised ``s``), which saves a pass over (B, K) per pair.
    """
    n_members, n_samples = probs.shape[:2]
    entropy_sums = entropy.sum(1)
    sums = probs.new_zeros(n_members, n_members)
    # Member i against all later members at once: views and broadcasting, no gathered copies.
    for i in range(n_members - 1):
        mixture_entropy = _entropy(probs[i] + probs[i + 1 :]).sum(-1) / 2
        values = mixture_entropy + n_samples * math.log(2)
        values -= (entropy_sums[i] + entropy_sums[i + 1 :]) / 2
        sums[i, i + 1 :] = values.clamp_(min=0)
    return sums + sums.T


def _cosine_sums(probs: torch.Tensor) -> torch.Tensor:
    """(M, B, K) float64 probs -> (M, M) sums over B of per-sample cosine similarity."""
    n_members, n_samples = probs.shape[:2]
    unit = (probs / probs.norm(dim=-1, keepdim=True)).reshape(n_members, -1)
    # Summing the per-sample dot products of unit vectors is again one matrix product.
    sums = (unit @ unit.T).clamp_(0, n_samples)
    return sums.fill_diagonal_(float(n_samples))
