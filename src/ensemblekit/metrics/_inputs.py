"""Boundary checks for metric inputs: probabilities, logits, labels and score vectors.

Each check raises at the public boundary, before any work, with a message that says what was
expected and what came. The probability and score checks return the tensor detached and in
float64: every metric computes in float64 so that results agree with float64 references to far
better than 1e-6 even on millions of samples.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_finite, check_tensor


def check_probabilities(name: str, value, *, ndim: int | tuple[int, ...]) -> torch.Tensor:
    """Check probabilities over the last dimension and return them as float64.

    Every entry must be finite and >= 0 and every row must sum to 1 within ``sqrt(eps)`` of the
    input dtype (3.5e-4 for float32, 1.5e-8 for float64; the tolerance scikit-learn uses).
    """
    value = _check_floating_nonempty(name, value, ndim=ndim)
    probs = value.detach().to(torch.float64)
    if bool((probs < 0).any()):
        raise ValueError(
            f"{name} must hold probabilities >= 0, got a minimum of {probs.min().item():.6g}; "
            "if these are logits, apply softmax over the last dimension first"
        )
    deviation = (probs.sum(-1) - 1).abs()
    tolerance = math.sqrt(torch.finfo(value.dtype).eps)
    worst = int(deviation.argmax())
    if deviation.reshape(-1)[worst] > tolerance:
        row_sum = probs.sum(-1).reshape(-1)[worst].item()
        row = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), deviation.shape))
        raise ValueError(
            f"rows of {name} must sum to 1 over the last dimension (within {tolerance:.1e} for "
            f"{value.dtype}), got a row summing to {row_sum:.6g} at index {row}; "
            "if these are logits, apply softmax over the last dimension first"
        )
    return probs


def check_logits(name: str, value) -> torch.Tensor:
    """Check member logits of shape (M, B, K): floating, non-empty and finite."""
    return _check_floating_nonempty(name, value, ndim=3).detach()


def check_labels(name: str, value, *, n_samples: int, n_classes: int) -> torch.Tensor:
    """Check integer class labels of shape (n_samples,) with values in [0, n_classes)."""
    check_tensor(name, value, ndim=1)
    if value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
        raise ValueError(
            f"{name} must hold integer class indices (e.g. torch.long), got dtype {value.dtype}"
        )
    if value.shape[0] != n_samples:
        raise ValueError(
            f"{name} must have one label per sample: expected shape ({n_samples},), "
            f"got {tuple(value.shape)}"
        )
    low, high = int(value.min()), int(value.max())
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise ValueError(
            f"{name} must lie in [0, {n_classes - 1}] for {n_classes} classes, got label {bad}"
        )
    return value.detach().to(torch.long)


def check_scores(name: str, value) -> torch.Tensor:
    """Check a non-empty, finite, real 1-D score vector and return it as float64."""
    check_tensor(name, value, ndim=1)
    if value.dtype == torch.bool or value.is_complex():
        raise ValueError(f"{name} must hold real-valued scores, got dtype {value.dtype}")
    if value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    _check_finite(name, value)
    return value.detach().to(torch.float64)


def _check_floating_nonempty(name: str, value, *, ndim) -> torch.Tensor:
    check_tensor(name, value, ndim=ndim)
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.numel() == 0:
        raise ValueError(
            f"{name} must not be empty, got shape {tuple(value.shape)} (no members, samples "
            "or classes)"
        )
    return _check_finite(name, value)


def _check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    # min and max propagate NaN and are +-inf when any entry is: one fast reduction decides,
    # and the shared check (slower, but it counts the bad entries) writes the message.
    low, high = torch.aminmax(value)
    if not (math.isfinite(low.item()) and math.isfinite(high.item())):
        check_finite(name, value)
    return value


def check_gaussian_members(member_means, member_vars, *, prefix: str = ""
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Check member means and variances, each (M, B, D), and return them as float64.

    Both floating, non-empty, finite and of one shape; every variance > 0. ``prefix`` names
    the pair in messages (``"ood_"`` gives ``ood_member_means``).
    """
    means_name, vars_name = f"{prefix}member_means", f"{prefix}member_vars"
    means = _check_floating_nonempty(means_name, member_means, ndim=3)
    variances = _check_floating_nonempty(vars_name, member_vars, ndim=3)
    if means.shape != variances.shape:
        raise ValueError(
            f"{means_name} and {vars_name} must have one shape (M, B, D), got "
            f"{tuple(means.shape)} and {tuple(variances.shape)}"
        )
    return means.detach().to(torch.float64), _positive(vars_name, variances)


def check_gaussian(mean, var) -> tuple[torch.Tensor, torch.Tensor]:
    """Check one Gaussian per output: mean and var, each (B, D) or (B,), of one shape; float64.

    For an ensemble these are the moment-matched mean and variance (``moment_match``).
    """
    mean = _check_floating_nonempty("mean", mean, ndim=(1, 2))
    var = _check_floating_nonempty("var", var, ndim=(1, 2))
    if mean.shape != var.shape:
        raise ValueError(
            f"mean and var must have one shape, (B, D) or (B,), got {tuple(mean.shape)} and "
            f"{tuple(var.shape)}"
        )
    return mean.detach().to(torch.float64), _positive("var", var)


def check_targets(name: str, value, *, shape: torch.Size) -> torch.Tensor:
    """Check real, finite regression targets of ``shape`` and return them as float64.

    ``shape`` is the predictions' (B, D) or (B,); targets of shape (B,) are accepted for
    (B, 1) predictions (one output) and reshaped, never broadcast.
    """
    check_tensor(name, value, ndim=(1, 2))
    if value.dtype == torch.bool or value.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {value.dtype}")
    if value.ndim == 1 and len(shape) == 2 and shape[1] == 1:
        value = value.unsqueeze(1)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have the predictions' shape {tuple(shape)} (one target per sample "
            f"and output), got {tuple(value.shape)}"
        )
    _check_finite(name, value)
    return value.detach().to(torch.float64)


def _positive(name: str, variances: torch.Tensor) -> torch.Tensor:
    values = variances.detach().to(torch.float64)
    smallest = values.min().item()
    if smallest <= 0:
        raise ValueError(
            f"{name} must be > 0 (variances, not standard deviations or log-variances), got a "
            f"minimum of {smallest:.6g}; a variance head should end in softplus(raw) + floor "
            "(ensemblekit.losses.positive_variance)"
        )
    return values
