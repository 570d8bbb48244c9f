"""Boundary checks for the scalers: logits (N, K) or member logits (M, N, K) with labels (N,).

Scalers take LOGITS, never probabilities: a softmax output passed as logits would be scaled as
if it were log-odds and give a wrong temperature silently, so rows that look like probabilities
are refused with a message that says how to get logits back (``log`` of the probabilities).
"""

from __future__ import annotations

import torch

from ..metrics._inputs import _check_floating_nonempty, check_labels, check_logits


def checked_logits(name: str, logits, labels, *, members: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 logits (N, K) (or (M, N, K) with ``members``) and int64 labels (N,)."""
    if members:
        values = check_logits(name, logits)
    else:
        values = _check_floating_nonempty(name, logits, ndim=2).detach()
    if values.shape[-1] < 2:
        raise ValueError(
            f"{name} must have at least 2 classes in the last dimension, got shape "
            f"{tuple(values.shape)}"
        )
    values = values.to(torch.float64)
    if bool((values >= 0).all()) and bool(((values.sum(-1) - 1).abs() < 1e-6).all()):
        raise ValueError(
            f"{name} look like probabilities (every row is >= 0 and sums to 1), but the scalers "
            "take logits: pass the logits before the softmax (or torch.log(probabilities), "
            "which differs from them only by a constant per row)"
        )
    labels = check_labels("labels", labels, n_samples=values.shape[-2], n_classes=values.shape[-1])
    return values, labels.to(values.device)
