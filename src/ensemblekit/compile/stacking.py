"""Stacked members: a copy of a Masksembles backbone whose layers run only the kept channels.

A width-C activation of M members becomes ``(B, M*P, ...)``: channels ``[m*P : (m+1)*P]`` are
member m's kept channels K_m(C) in ascending order (P = |K_m(C)|, the same for every member with
generated masks). Swapping the layers of a copy, the backbone's own ``forward`` runs unchanged:

* the stem (reads the raw input, shared by all members): a dense layer with ``M*P_out``
  outputs, weight ``cat_m W[K_out_m]``;
* every other conv: grouped (``groups=M``), weight ``cat_m W[K_out_m][:, K_in_m]``;
* every other linear layer, the head included: block-diagonal, one batched matmul
  (:class:`StackedLinear`); the head writes ``(B, M*K)``;
* BatchNorm: the gathered affine parameters and running statistics of K_m(C);
* Masksembles layers: ``Identity``, or ``ReLU`` for one built with ``activation="relu"`` (the
  channel selection already applied the masks).

Per-channel operations (activations, pooling, adds of equal widths, a channel-major flatten)
commute with the selection, and a channel outside K_m(C) only ever reaches member m's logits
through a mask of width C, which zeroes it: member m's logits are exactly its tiled logits.
If members of one width keep different numbers of channels (hand-made masks), each is padded to
the largest count with copies of channel 0 whose outgoing weights are zero, which stays exact.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ..layers import Masksembles
from ..methods.masksembles import MasksemblesModel
from ..methods.member_masks import LayerMasks
from ..submodules import replace_module


def member_channels(model: MasksemblesModel) -> list[LayerMasks]:
    """``model.channel_masks()``, with ``in_masks=None`` for the layer that reads the raw
    input (shared by all members, unlike a width that merely has no Masksembles layer)."""
    if not hasattr(model.backbone, "layer_widths"):
        raise NotImplementedError(
            "compile_members needs a backbone whose layer_widths() maps its layers' channel "
            "widths (an ensemblekit.models.Backbone, as build_model makes); "
            f"{type(model.backbone).__name__} does not (a converted model?)"
        )
    widths = model.backbone.layer_widths()
    return [
        dataclasses.replace(entry, in_masks=None) if width.in_width is None else entry
        for entry, width in zip(model.channel_masks(), widths, strict=True)
    ]


def kept_positions(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's kept positions in ascending order, padded to a common length P.

    Args:
        masks: bool ``(n, size)``.

    Returns:
        indices ``(n, P)`` (padding repeats position 0) and bool ``(n, P)``, True where the
        index is a kept position rather than padding.
    """
    counts = masks.sum(dim=1)
    size = max(int(counts.max()), 1)
    # A stable sort of the complement puts kept positions first, in ascending order.
    order = torch.sort((~masks).to(torch.uint8), dim=1, stable=True).indices[:, :size]
    real = torch.arange(size, device=masks.device) < counts.unsqueeze(1)
    return torch.where(real, order, torch.zeros_like(order)), real


def member_weights(weight: torch.Tensor, entry: LayerMasks, members: list[int]) -> torch.Tensor:
    """``(len(members), P_out, P_in, *kernel)``: each member's ``W[K_out][:, K_in]``
    (``P_in`` = all inputs for the stem), zero at padded input positions so that padding
    channels never reach a member's output."""
    out_index, _ = kept_positions(entry.out_masks[members])
    picked = weight[out_index]  # (members, P_out, in, *kernel)
    if entry.in_masks is None:
        return picked
    in_index, in_real = kept_positions(entry.in_masks[members])
    kernel = [1] * (picked.ndim - 3)
    index = in_index.view(len(members), 1, -1, *kernel).expand(
        -1, picked.shape[1], -1, *picked.shape[3:]
    )
    picked = torch.gather(picked, 2, index)
    return picked * in_real.view(len(members), 1, -1, *kernel).to(picked.dtype)


class StackedLinear(nn.Module):
    """M members' linear layers on stacked features: ``(B, M*P_in) -> (B, M*P_out)``.

    ``y[:, m] = x[:, m] @ W_m^T + b_m`` for every member m at once (one batched matmul).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """``weight``: ``(M, P_out, P_in)``; ``bias``: ``(M, P_out)`` or None."""
        super().__init__()
        self.register_buffer("weight_t", weight.transpose(1, 2).contiguous())
        self.register_buffer("bias", None if bias is None else bias.unsqueeze(1).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members, size_in, size_out = self.weight_t.shape
        if x.ndim != 2 or x.shape[1] != members * size_in:
            raise ValueError(
                f"StackedLinear expects an input of shape (B, {members * size_in}), got "
                f"{tuple(x.shape)}"
            )
        per_member = x.view(x.shape[0], members, size_in).transpose(0, 1)  # (M, B, P_in)
        if self.bias is None:
            out = torch.bmm(per_member, self.weight_t)
        else:
            out = torch.baddbmm(self.bias, per_member, self.weight_t)
        return out.transpose(0, 1).reshape(x.shape[0], members * size_out)

    def extra_repr(self) -> str:
        members, size_in, size_out = self.weight_t.shape
        return f"members={members}, in_features={size_in}, out_features={size_out}"


def _stacked_batchnorm(entry: LayerMasks, members: list[int]) -> nn.Module:
    module = entry.module
    if entry.in_masks is None:
        raise NotImplementedError(
            f"compile_members: BatchNorm {entry.name!r} reads the raw input; only a conv or "
            "linear layer may read it"
        )
    if module.running_mean is None:
        raise NotImplementedError(
            f"compile_members: BatchNorm {entry.name!r} has no running statistics "
            "(track_running_stats=False): it normalises with batch statistics, which differ "
            "between a stacked and a tiled batch"
        )
    rows = kept_positions(entry.out_masks[members])[0].reshape(-1)
    new = type(module)(rows.numel(), eps=module.eps, momentum=module.momentum, affine=module.affine)
    new = new.to(device=module.running_mean.device, dtype=module.running_mean.dtype)
    with torch.no_grad():
        new.running_mean.copy_(module.running_mean[rows])
        new.running_var.copy_(module.running_var[rows])
        if module.affine:
            new.weight.copy_(module.weight[rows])
            new.bias.copy_(module.bias[rows])
    return new


def _stacked_conv(entry: LayerMasks, members: list[int]) -> nn.Module:
    module, count = entry.module, len(members)
    if module.groups != 1:
        raise NotImplementedError(
            f"compile_members: grouped convolution {entry.name!r} (groups={module.groups}) is "
            "not supported"
        )
    weight = member_weights(module.weight.detach(), entry, members)
    shared_input = entry.in_masks is None
    new = nn.Conv2d(
        module.in_channels if shared_input else count * weight.shape[2],
        count * weight.shape[1],
        module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=1 if shared_input else count,
        bias=module.bias is not None,
        padding_mode=module.padding_mode,
        device=module.weight.device,
        dtype=module.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(weight.reshape(new.weight.shape))
        if module.bias is not None:
            new.bias.copy_(module.bias[kept_positions(entry.out_masks[members])[0]].reshape(-1))
    return new


def _stacked_linear(entry: LayerMasks, members: list[int]) -> nn.Module:
    module, count = entry.module, len(members)
    weight = member_weights(module.weight.detach(), entry, members)
    bias = None
    if module.bias is not None:
        bias = module.bias.detach()[kept_positions(entry.out_masks[members])[0]]
    if entry.in_masks is not None:
        return StackedLinear(weight, bias)
    # The stem reads shared features: one dense layer with M*P_out outputs.
    new = nn.Linear(
        module.in_features,
        count * weight.shape[1],
        bias=bias is not None,
        device=module.weight.device,
        dtype=module.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(weight.reshape(new.weight.shape))
        if bias is not None:
            new.bias.copy_(bias.reshape(-1))
    return new


def stacked_layer(entry: LayerMasks, members: list[int]) -> nn.Module:
    """The stacked replacement of one conv / linear / BatchNorm layer for ``members``."""
    module = entry.module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return _stacked_batchnorm(entry, members)
    if type(module) is nn.Conv2d:
        return _stacked_conv(entry, members)
    if type(module) is nn.Linear:
        return _stacked_linear(entry, members)
    raise NotImplementedError(
        f"compile_members: layer {entry.name!r} is {type(module).__name__}; supported layers are "
        "nn.Conv2d, nn.Linear and BatchNorm"
    )


def stack_members(backbone: nn.Module, masks: list[LayerMasks], members: list[int],
                  *, kept: frozenset[str] | set[str] = frozenset()) -> nn.Module:
    """A copy of ``backbone`` (in eval mode) computing ``members`` (indices) at once:
    ``(B, ...) -> (B, len(members) * K)``, member-major on dim 1. For one member this is its
    thin dense sub-network ``(B, ...) -> (B, K)``. Layers named in ``kept`` (the shared
    prefix, :mod:`.shared_prefix`) stay as they are."""
    listed = {entry.name for entry in masks} | set(kept)
    for name, module in backbone.named_modules():
        has_state = any(True for _ in module.parameters(recurse=False)) or any(
            buffer is not None for buffer in module.buffers(recurse=False)
        )
        if has_state and name not in listed and not isinstance(module, Masksembles):
            raise NotImplementedError(
                f"compile_members: {name!r} ({type(module).__name__}) has parameters or buffers "
                "but is not a conv, linear or BatchNorm layer of the backbone's layer_widths(); "
                "its channels cannot be split among the members"
            )
    copied = copy.deepcopy(backbone)
    for entry in masks:
        replace_module(copied, entry.name, stacked_layer(entry, members))
    for name, module in backbone.named_modules():
        if isinstance(module, Masksembles):
            fused_relu = module.activation == "relu"
            replace_module(copied, name, nn.ReLU() if fused_relu else nn.Identity())
    return copied.train(False)
