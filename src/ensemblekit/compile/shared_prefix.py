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
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model.backbone(repeat_members(example, count))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
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
