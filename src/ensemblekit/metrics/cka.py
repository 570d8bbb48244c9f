r"""Linear centred kernel alignment (CKA; Kornblith, Norouzi, Lee & Hinton, ICML 2019).

How alike two representations of the same N inputs are, whatever their widths:

.. math::  \mathrm{CKA}(X, Y) = \frac{\lVert Y_c^\top X_c \rVert_F^2}
           {\lVert X_c^\top X_c \rVert_F \, \lVert Y_c^\top Y_c \rVert_F}

with :math:`X_c, Y_c` the column-centred ``(N, D1)`` and ``(N, D2)`` feature matrices. In [0, 1];
1 for identical representations; unchanged by an orthogonal transform or an isotropic scaling
of either side. It compares what two networks compute on the data, not how their weights are
parametrised: a rescaling that a ReLU network absorbs (one layer's output scaled up, the next
layer's input scaled down) leaves the logits and the representations after it unchanged,
while it moves a cosine of flattened weights. (A per-channel rescaling does change the
representation between the two layers it is moved across.)
"""

from __future__ import annotations

import math

import torch

from .._validation import check_finite, check_tensor


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between representations ``x`` (N, D1) and ``y`` (N, D2) of the same N inputs.

    Row n of both is the representation of input n. Computed in float64 in feature space
    (``D1 x D2`` cross-covariances), so memory grows with the widths, not with N^2. Returns nan
    when either representation is constant over the inputs (all centred features zero: CKA is
    0 / 0 there).
    """
    x = _features("x", x)
    y = _features("y", y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must hold the same inputs (rows), got {x.shape[0]} and {y.shape[0]} rows; "
            "pass the representations of the same N inputs"
        )
    return _centred_cka(_centred(x), _centred(y))


def pairwise_cka(member_features: torch.Tensor) -> torch.Tensor:
    """Linear CKA between every pair of members: ``(M, N, D)`` -> ``(M, M)`` float64.

    ``member_features[m]`` is member m's representation of the N inputs (the same inputs for
    every member). Symmetric with ones on the diagonal (nan where a member's representation is
    constant).
    """
    features = _features("member_features", member_features, ndim=3)
    members = features.shape[0]
    centred = torch.stack([_centred(features[m]) for m in range(members)])
    result = torch.ones(members, members, dtype=torch.float64)
    for i in range(members):
        for j in range(i + 1, members):
            value = _centred_cka(centred[i], centred[j])
            result[i, j] = result[j, i] = value
    for m in range(members):
        if not bool(centred[m].any()):
            result[m, m] = math.nan
    return result


def _centred_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """CKA of column-centred float64 ``x`` (N, D1) and ``y`` (N, D2) (no checks)."""
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm_x = torch.linalg.matrix_norm(x.T @ x)
    norm_y = torch.linalg.matrix_norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        return math.nan
    return float((cross / (norm_x * norm_y)).clamp(0.0, 1.0))


def _centred(features: torch.Tensor) -> torch.Tensor:
    return features - features.mean(0, keepdim=True)


def _features(name: str, value, *, ndim: int = 2) -> torch.Tensor:
    value = check_tensor(name, value, ndim=ndim)
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}; "
                         "convert it with .double()")
    if value.shape[-2] < 2 or value.shape[-1] < 1:
        raise ValueError(f"{name} needs at least 2 inputs (rows) and 1 feature, got shape "
                         f"{tuple(value.shape)}")
    return check_finite(name, value.detach()).to(torch.float64).cpu()
