"""The member-major batch layout used across the library.

A batch of B inputs tiled for M members has shape ``(M*B, ...)`` and member ``m`` owns rows
``m*B : (m+1)*B`` -- exactly what ``x.repeat(M, 1, ...)`` produces. Masksembles and
BatchEnsemble layers read this layout; ``split_members`` turns a member-major output back into
``(M, B, ...)``.

What the members output: classification members end in logits ``(M, B, K)``; regression members
each predict a Gaussian per output, returned as :class:`GaussianMembers` ``(means, variances)``,
each ``(M, B, D)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._validation import check_int, check_tensor


class GaussianMembers(NamedTuple):
    """The members' Gaussian predictions of a regression model: member ``m`` predicts
    ``N(means[m, b, d], variances[m, b, d])`` for output ``d`` of input ``b``, independently
    over ``d``.

    means: (M, B, D) floating; variances: (M, B, D) floating, > 0 (the same shape). A plain
    tuple: ``means, variances = members`` unpacks it, and every function of
    ``ensemblekit.metrics`` that takes ``(member_means, member_vars)`` takes ``*members``.
    """

    means: torch.Tensor
    variances: torch.Tensor


def repeat_members(x: torch.Tensor, n: int) -> torch.Tensor:
    """Tile a batch for ``n`` members: ``(B, ...) -> (n*B, ...)``, member-major.

    Member ``m`` owns rows ``m*B:(m+1)*B``; each block is a copy of ``x``.
    """
    check_tensor("x", x)
    n = check_int("n", n, minimum=1)
    if x.ndim == 0:
        raise ValueError("x must have a batch dimension, got a 0-dimensional tensor")
    return x.repeat(n, *([1] * (x.ndim - 1)))


def split_members(y: torch.Tensor, n: int) -> torch.Tensor:
    """View a member-major batch as members: ``(n*B, ...) -> (n, B, ...)`` (no copy)."""
    check_tensor("y", y)
    n = check_int("n", n, minimum=1)
    if y.ndim == 0 or y.shape[0] % n != 0:
        size = "a 0-dimensional tensor" if y.ndim == 0 else f"batch size {y.shape[0]}"
        raise ValueError(
            f"split_members needs a batch size that is a multiple of n={n}, got {size}; "
            "build member-major batches with repeat_members(x, n)"
        )
    return y.reshape(n, y.shape[0] // n, *y.shape[1:])
