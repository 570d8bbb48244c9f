"""The single model: one backbone, one member; the baseline every method is compared with."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..models.factory import LayerFactory
from .base import EnsembleModel, flat_parameters
from .registry import register_method


class SingleModel(EnsembleModel):
    """One plain backbone: ``model(x)`` is its logits ``(B, K)``; M = 1."""

    method = "single"

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__(1)
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_members(self, x: torch.Tensor, num_samples: int | None) -> torch.Tensor:
        return self.backbone(x).unsqueeze(0)

    def member_weights(self) -> torch.Tensor:
        """All parameters, flattened: ``(1, P)``."""
        return flat_parameters(self.backbone).unsqueeze(0)


@register_method(
    "single", label="Single model", color="#4d4d4d", marker="o", role="reference",
    construction=lambda options: "floor: one member, identical to itself by definition",
)
def single(make_backbone: Callable, *, seed: int) -> SingleModel:
    return SingleModel(make_backbone(LayerFactory(), seed))
