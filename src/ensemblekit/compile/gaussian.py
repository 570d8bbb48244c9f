"""Compiled members of a regression model: the raw compiled path, read as Gaussians.

Every compiled path (:mod:`.registry`) computes the members' raw outputs, ``(M, B, 2D)`` for
a regression model's head (D means, then D raw variances), and is checked against the model's
own raw outputs; :class:`GaussianCompiledMembers` wraps the result so that calling it returns
:class:`~ensemblekit.members.GaussianMembers` ``(means, variances)``, each ``(M, B, D)``, by
the same :func:`~ensemblekit.methods.task.gaussian_outputs` as ``predict_members``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..members import GaussianMembers
from ..methods.task import gaussian_outputs


class GaussianCompiledMembers(nn.Module):
    """Inference-only ``(B, ...) -> GaussianMembers`` (each ``(M, B, D)``), equal to
    ``predict_members(model, x)`` of the regression model ``raw`` was compiled from.

    ``raw``: the compiled members' module, ``(B, ...) -> (M, B, 2D)``; ``num_members`` and
    ``strategy`` are its own. ``.train()`` raises, as for every compiled module.
    """

    #: predict_members calls it directly: it returns the members' prediction
    returns_member_logits = True
    task = "regression"

    def __init__(self, raw: nn.Module, num_outputs: int) -> None:
        super().__init__()
        self.raw = raw
        self.num_outputs = num_outputs
        self.num_members = raw.num_members
        self.strategy = raw.strategy
        super().train(False)

    def train(self, mode: bool = True) -> GaussianCompiledMembers:
        self.raw.train(mode)  # raises for mode=True: compiled members are inference-only
        return super().train(False)

    def forward(self, x: torch.Tensor) -> GaussianMembers:
        return gaussian_outputs(self.raw(x), self.num_outputs)

    def extra_repr(self) -> str:
        return f"num_outputs={self.num_outputs}"
