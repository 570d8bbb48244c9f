"""Compiled members for any network: the layers before the first mask run once, the rest tiled.

A converted network (:func:`ensemblekit.to_masksembles` on your own model) has no map of its
channel widths, so its members cannot be cut into thin sub-networks. What still holds for any
network is that everything before the first Masksembles layer is the same computation for every
member. :class:`FanOutMembers` runs the network on the ordinary batch ``(B, ...)`` and, at the
first Masksembles layer a forward reaches, tiles that layer's input M times (member-major, as
``predict_members`` would have tiled the network's input): from there on each member goes
through its own masks, so the logits are those of the tiled pass.

That is exact only if nothing computed before the fan-out is combined with something after it
(a residual ``x + drop(f(x))`` would add ``(B, ...)`` to ``(M*B, ...)``). :func:`fan_out_members`
checks the result against ``predict_members`` on an example batch of at least two rows (so such
an add fails on its shapes instead of broadcasting) and, where it differs or fails, returns the
plain tiled pass: never a wrong answer.

MC-Dropout models compile the same way: they fan out at their first dropout layer, and each
member's seeded dropout masks (:mod:`ensemblekit.methods.seeded_dropout`) are drawn as in
``predict_members``, so the compiled members equal its output.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..layers import Masksembles
from ..members import repeat_members, split_members
from ..methods.mc_dropout import MCDropoutModel, dropout_modules
from ..methods.seeded_dropout import member_dropout, seeded_mask_source
from .compiled import reproduces
from .inference_only import InferenceOnlyMembers
from .registry import CompileOptions, register_compiler


def _fan_out_layers(model) -> list[nn.Module]:
    """Where the members start to differ: Masksembles layers, or an MC-Dropout model's
    dropout layers with ``p > 0``."""
    if isinstance(model, MCDropoutModel):
        return [m for m in dropout_modules(model.backbone) if m.p > 0]
    return [m for m in model.backbone.modules() if isinstance(m, Masksembles)]


class FanOutMembers(InferenceOnlyMembers):
    """Inference-only member logits ``(B, ...) -> (M, B, K)`` of a Masksembles model whose
    backbone is any network; ``fan_out=False``: the whole network tiled (the fallback).

    It holds a copy of the network taken when built: compile again after training.
    """

    def __init__(self, model, *, fan_out: bool) -> None:
        """``model``: a Masksembles or MC-Dropout model (its backbone is copied)."""
        super().__init__()
        copied = copy.deepcopy(model).eval()
        self.network = copied.backbone
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self.num_members = model.num_members
        self.fan_out = fan_out
        self.strategy = "fan-out" if fan_out else "tiled"
        # MC-Dropout: the seed of its per-call mask generator (None for Masksembles)
        self.sampling_seed = getattr(model, "sampling_seed", None)
        self._fanned = False
        for module in _fan_out_layers(copied):
            module.register_forward_pre_hook(self._tile_first)

    def _tile_first(self, module: nn.Module, inputs: tuple) -> tuple | None:
        if not self.fan_out or self._fanned:
            return None
        self._fanned = True
        return (repeat_members(inputs[0], self.num_members), *inputs[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        count = self.num_members
        self._fanned = False
        try:
            if self.sampling_seed is None:
                logits = self.network(x if self.fan_out else repeat_members(x, count))
            else:
                masks = seeded_mask_source(count, self.sampling_seed, x.device)
                with member_dropout(self.network, count, masks):
                    logits = self.network(x if self.fan_out else repeat_members(x, count))
        finally:
            self._fanned = False
        return split_members(logits, count)


def fan_out_members(model, example: torch.Tensor, check) -> FanOutMembers:
    """:class:`FanOutMembers` for ``model`` (Masksembles or MC-Dropout), fanning out where that
    is exact on ``example`` (``check(compiled, example) -> bool``), else tiled."""
    if len(example) < 2:  # two rows: a shared/member add then fails on shapes, never broadcasts
        example = torch.cat([example, example.flip(-1)])
    fast = FanOutMembers(model, fan_out=True)
    try:
        if check(fast, example):
            return fast
    except RuntimeError:
        pass
    return FanOutMembers(model, fan_out=False)


@register_compiler(MCDropoutModel)
def compile_mc_dropout(model: MCDropoutModel, options: CompileOptions) -> FanOutMembers:
    """MC-Dropout's compiled path: fan out at the first dropout layer (module docstring)."""
    return fan_out_members(model, options.example_input,
                           lambda fast, x: reproduces(model, fast, x))
