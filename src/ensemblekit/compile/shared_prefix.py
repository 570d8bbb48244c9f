"""The shared prefix: layers whose input is the same for every member run once, not M times.

With masks only where dropout goes (``placement="dropout"``), everything before the first mask
is the same computation for every member. A dry run of the tiled model (M copies of an example
batch, eval mode) shows which conv / linear / BatchNorm layers read an input whose M member
slices are equal; of those, a layer whose outputs every member keeps in full (no mask of its
width) stays the original layer on the original ``(B, C, ...)`` activation, computed once. The
first layer that writes masked channels from a shared input fans the members out: one dense
layer with ``M*P`` outputs, as the stem of a fully masked model does (:mod:`.stacking`). The
head always fans out, so the logits are member-major even for identical members.

A backbone that adds a shared activation to a member-stacked one (a Wide ResNet block whose
masks sit between its convolutions) cannot keep its prefix shared: :func:`compile_members`
detects the failing dry run and compiles without sharing (only the stem reads shared input).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..members import repeat_members
from ..methods.masksembles import MasksemblesModel
from ..methods.member_masks import LayerMasks
from ..runtime import eval_mode
from ..submodules import replace_module


def shared_input_layers(model: MasksemblesModel, example: torch.Tensor) -> set[str]:
    """Names of the listed layers whose input is equal for every member on ``example``
    ``(b, ...)`` (the tiled dry run, eval mode, no gradients; modes restored)."""
    names = {layer.name for layer in model.backbone.layer_widths()}
    count = model.num_members
    shared: set[str] = set()

    def record(name):
        def hook(module, inputs):
            rows = inputs[0].reshape(count, -1)
            if all(torch.equal(rows[0], rows[m]) for m in range(1, count)):
                shared.add(name)
        return hook

    modules = dict(model.backbone.named_modules())
    handles = [modules[name].register_forward_pre_hook(record(name)) for name in names]
    try:
        with eval_mode(model), torch.no_grad():
            model.backbone(repeat_members(example, count))
    finally:
        for handle in handles:
            handle.remove()
    return shared


def with_shared_prefix(
    masks: list[LayerMasks], shared_inputs: set[str], head_name: str
) -> tuple[list[LayerMasks], set[str]]:
    """Split the layers into those kept as they are (shared prefix) and those stacked.

    Args:
        masks: every layer's :class:`LayerMasks` (``in_masks=None`` for the stem).
        shared_inputs: the layers whose input is the same for every member.
        head_name: the classifier, which always fans out.

    Returns:
        the entries to stack (a shared-input conv / linear that writes masked channels, or
        the head, gets ``in_masks=None``: it reads the shared activation and fans out) and
        the names of the layers kept as they are.
    """
    stacked, kept = [], set()
    for entry in masks:
        if entry.name not in shared_inputs:
            stacked.append(entry)
        elif entry.out_masks.all() and entry.name != head_name:
            kept.add(entry.name)
        elif isinstance(entry.module, nn.modules.batchnorm._BatchNorm):
            stacked.append(entry)  # reads the fanned-out output of the layer before it
        else:
            stacked.append(dataclasses.replace(entry, in_masks=None))
    return stacked, kept


class _PrefixStore:
    """Outputs of the shared-prefix layers, written by the first member's network and read by
    the others within one forward (cleared by :class:`~.compiled.CompiledMembers`)."""

    def __init__(self) -> None:
        self.outputs: dict[str, torch.Tensor] = {}


class RecordOutput(nn.Module):
    """The first member's shared-prefix layer: computes, and keeps its output for the others."""

    def __init__(self, layer: nn.Module, store: _PrefixStore, name: str) -> None:
        super().__init__()
        self.layer, self.store, self.name = layer, store, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        self.store.outputs[self.name] = out
        return out


class ReplayOutput(nn.Module):
    """Another member's shared-prefix layer: the first member's output, not computed again."""

    def __init__(self, store: _PrefixStore, name: str) -> None:
        super().__init__()
        self.store, self.name = store, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.store.outputs[self.name]


def share_prefix_across(networks: list[nn.Module], kept: set[str]) -> _PrefixStore:
    """Make the loop strategy's member networks compute the shared prefix once: member 0's
    kept layers record their outputs, the other members' replay them (same forward code, same
    call order). Returns the store to clear after each forward."""
    store = _PrefixStore()
    for name in sorted(kept):
        replace_module(networks[0], name,
                       RecordOutput(networks[0].get_submodule(name), store, name))
        for network in networks[1:]:
            replace_module(network, name, ReplayOutput(store, name))
    return store
