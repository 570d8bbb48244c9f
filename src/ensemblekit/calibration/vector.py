"""Vector scaling (Guo et al., 2017): a scale and a bias per class, ``z -> w * z + b``.

``w`` (K,) and ``b`` (K,) minimise the validation NLL of ``softmax(w * z + b)``, a convex
function of (w, b), by L-BFGS with a strong-Wolfe line search in float64, started at the
identity (w = 1, b = 0): every accepted step lowers the NLL, so the fitted validation NLL is
never above the unscaled one. Adding a constant to every bias changes no softmax, so ``b`` is
returned centred (mean 0). With K parameters per side it can overfit a small validation set;
temperature scaling (one parameter) is the safer default.

Vector scaling contains temperature scaling (``w = 1/T``, ``b = 0``), so where the validation
data do not identify a temperature (:mod:`.identification`: no error with a margin, fewer than
``min_errors`` errors, logits no better than chance) they do not identify ``(w, b)`` either --
on a split without error the NLL keeps falling as ``w`` grows without end. Then the fit returns
the identity (w = 1, b = 0) with ``fitted=False`` and the reason, and warns
(:class:`~.identification.TemperatureNotIdentifiedWarning`); likewise if L-BFGS ends on a
non-finite point.

Inputs are LOGITS (N, K), before any softmax.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_int, check_tensor
from ._inputs import checked_logits
from .identification import (
    MIN_VALIDATION_ERRORS,
    check_min_errors,
    checked_outcome,
    identified_temperature,
    warn_not_fitted,
)
from .temperature import TEMPERATURE_BOUNDS

_MAX_ITERATIONS = 500


def fit_vector_scaling(logits: torch.Tensor, labels: torch.Tensor, *,
                       min_errors: int = MIN_VALIDATION_ERRORS
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class ``(scale (K,), bias (K,))`` float64 minimising the NLL of
    ``softmax(scale * logits + bias)``: logits (N, K) floating, labels (N,) in [0, K). The
    identity (ones, zeros), with a warning saying why, when the data do not identify them
    (module docstring; ``VectorScaler.fit`` keeps the reason)."""
    scale, bias, _ = _checked_fit(logits, labels, min_errors)
    return scale, bias


def _checked_fit(logits, labels, min_errors) -> tuple[torch.Tensor, torch.Tensor, str | None]:
    """``(scale, bias, reason)``: reason None when fitted; warns for the public caller."""
    min_errors = check_min_errors(min_errors)
    values, labels = checked_logits("logits", logits, labels)
    identity = (torch.ones(values.shape[-1], dtype=torch.float64, device=values.device),
                torch.zeros(values.shape[-1], dtype=torch.float64, device=values.device))
    check = identified_temperature(values, labels, *TEMPERATURE_BOUNDS, min_errors)
    reason = check.reason
    if check.fitted:
        scale, bias = _lbfgs(values, labels)
        if bool(torch.isfinite(scale).all() and torch.isfinite(bias).all()):
            return scale, bias, None
        reason = "L-BFGS ended on a non-finite scale or bias"
    warn_not_fitted([reason], "vector scaling not applied (scale 1, bias 0)", stacklevel=3)
    return *identity, reason


def _lbfgs(values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimiser from the identity: float64 logits (N, K), int64 labels (N,)."""
    n_classes = values.shape[-1]
    scale = torch.ones(n_classes, dtype=torch.float64, device=values.device, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, device=values.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [scale, bias], lr=1.0, max_iter=_MAX_ITERATIONS, tolerance_grad=1e-12,
        tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(values * scale + bias, labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    scale, bias = scale.detach(), bias.detach()
    return scale, bias - bias.mean()


class VectorScaler(nn.Module):
    """``z -> scale * z + bias`` on logits (..., K); ``scale`` and ``bias`` are float64 (K,)
    buffers (``state_dict``). ``VectorScaler.fit(val_logits, val_labels)`` fits them."""

    def __init__(self, num_classes: int, scale: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None, *, fitted: bool = True,
                 reason: str | None = None):
        super().__init__()
        num_classes = check_int("num_classes", num_classes, minimum=2)
        self.register_buffer("scale", _vector("scale", scale, num_classes, 1.0))
        self.register_buffer("bias", _vector("bias", bias, num_classes, 0.0))
        self.fitted, self.reason = checked_outcome(fitted, reason)

    @classmethod
    def fit(cls, logits: torch.Tensor, labels: torch.Tensor, *,
            min_errors: int = MIN_VALIDATION_ERRORS) -> VectorScaler:
        """A scaler with ``fit_vector_scaling(logits, labels)``; ``fitted`` and ``reason`` say
        whether the data identified it (module docstring)."""
        scale, bias, reason = _checked_fit(logits, labels, min_errors)
        return cls(scale.numel(), scale, bias, fitted=reason is None, reason=reason)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * self.scale.to(logits.dtype) + self.bias.to(logits.dtype)

    def extra_repr(self) -> str:
        return f"num_classes={self.scale.numel()}, fitted={self.fitted}"


def _vector(name: str, value, num_classes: int, default: float) -> torch.Tensor:
    if value is None:
        return torch.full((num_classes,), default, dtype=torch.float64)
    check_tensor(name, value, ndim=1)
    if value.numel() != num_classes or not value.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor of shape ({num_classes},), got "
                         f"{value.dtype} of shape {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite, got {value.tolist()}")
    return value.detach().to(torch.float64).clone()
