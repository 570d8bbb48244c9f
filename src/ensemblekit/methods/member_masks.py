"""Members as channel masks: which channels each member keeps at every layer, and the weights
that leaves each member.

Masksembles members keep fixed channel sets; an MC-Dropout sample is a random one. Both read the
backbone's map of channel widths (:meth:`ensemblekit.models.Backbone.layer_widths`) and give
every conv / linear / BatchNorm layer the masks of the width it reads and the width it writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerMasks:
    """One conv / linear / BatchNorm layer and the channels each member keeps around it.

    Attributes:
        name: the module's path inside ``model.backbone``.
        module: the layer.
        in_masks: bool ``(n, in_size)``: row m marks the input channels (features, for a
            linear layer after a flatten) member m reads; all True for the raw input.
        out_masks: bool ``(n, out_size)``: the output channels member m keeps; all True for
            the logits.
    """

    name: str
    module: nn.Module
    in_masks: torch.Tensor
    out_masks: torch.Tensor


def layer_masks(backbone: nn.Module, width_masks: dict[int, torch.Tensor], n: int):
    """:class:`LayerMasks` for every layer of ``backbone`` from per-width masks (n, C).

    A width absent from ``width_masks`` (skipped, or without a drop site) keeps all channels.
    """
    if not hasattr(backbone, "layer_widths"):
        raise NotImplementedError(
            f"channel masks need a backbone built by ensemblekit.build_model, which knows where "
            f"the raw input and the logits are; {type(backbone).__name__} (a converted model?) "
            "does not"
        )
    device = next(backbone.parameters()).device

    def masks(width: int | None, size: int) -> torch.Tensor:
        if width is None or width not in width_masks:
            return torch.ones(n, size, dtype=torch.bool, device=device)
        return width_masks[width].to(device).repeat_interleave(size // width, dim=1)

    return [
        LayerMasks(
            layer.name,
            layer.module,
            masks(layer.in_width if layer.in_masked else None, layer.in_size),
            masks(layer.out_width if layer.out_masked else None, layer.out_size),
        )
        for layer in backbone.layer_widths()
    ]


def masked_member_weights(backbone: nn.Module, masks: list[LayerMasks], n: int) -> torch.Tensor:
    """Each member's weights ``(n, P)``: a masked layer's weight ``W[o, c, ...]`` is kept where
    member m keeps output o and input c, and its per-channel parameters (bias, BatchNorm scale
    and shift) where it keeps the channel; zeros elsewhere. Other parameters are shared.
    Columns follow ``backbone.parameters()`` order."""
    by_module = {id(entry.module): entry for entry in masks}
    pieces = []
    for module in backbone.modules():
        entry = by_module.get(id(module))
        for parameter in module.parameters(recurse=False):
            parameter = parameter.detach()
            if entry is None:
                pieces.append(parameter.reshape(1, -1).expand(n, -1))
                continue
            out_mask = entry.out_masks.to(parameter.dtype)
            if parameter.ndim >= 2:
                if parameter.shape[1] != entry.in_masks.shape[1]:
                    raise NotImplementedError(
                        f"member weights of the grouped layer {entry.name!r} are not supported"
                    )
                trailing = [1] * (parameter.ndim - 2)
                in_mask = entry.in_masks.to(parameter.dtype).view(n, 1, -1, *trailing)
                masked = parameter * out_mask.view(n, -1, 1, *trailing) * in_mask
            else:
                masked = parameter * out_mask
            pieces.append(masked.reshape(n, -1))
    return torch.cat(pieces, dim=1)
