"""The compiled path of a model whose method registered none: its own one-pass forward.

:func:`~ensemblekit.compile.compile_members` of an :class:`~ensemblekit.methods.EnsembleModel`
without a compiler (:mod:`.registry`) returns :class:`OwnForwardMembers`: the model's own
``forward_members`` in eval mode, on a copy taken at compile time -- exactly
``predict_members(model, x)``, no faster, so that ``compile_members(model)`` is one call for
every ensemble model.
"""

from __future__ import annotations

import copy

import torch

from ..methods.base import EnsembleModel, member_outputs
from .inference_only import InferenceOnlyMembers


class OwnForwardMembers(InferenceOnlyMembers):
    """Inference-only ``(B, ...) -> (M, B, K)``: ``predict_members`` of a copy of the model
    (its raw member outputs: a regression model's 2*D head values).

    It holds a copy of the model taken when built: compile again after training.
    """

    strategy = "own forward"

    def __init__(self, model: EnsembleModel) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.num_members = model.num_members
        super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return member_outputs(self.model, x)
