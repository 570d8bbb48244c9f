"""Folding eval-mode BatchNorm into the convolution that feeds it.

In eval mode ``bn(conv(x)) = conv'(x)`` with ``W' = W * s`` and ``b' = (b - mean) * s + beta``,
``s = gamma / sqrt(var + eps)`` per output channel: one pass over the activation instead of two.
That is only exact if nothing else reads the convolution's output, which the code of a
``forward`` does not show; the autograd graph of one dry run does. A pair is folded when the
BatchNorm's input is the convolution's output, that output has no other consumer, and each
module runs once per forward.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from ..submodules import replace_module


def _consumer_counts(root) -> Counter:
    """For every autograd node reachable from ``root``, how many edges point to it."""
    counts: Counter = Counter()
    seen, pending = set(), [root]
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for upstream, _ in node.next_functions:
            if upstream is not None:
                counts[upstream] += 1
                pending.append(upstream)
    return counts


def conv_batchnorm_pairs(network: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv name, BatchNorm name)`` pairs of ``network`` that can be folded, found by one
    forward of ``example`` with gradients on (the network's mode and state are unchanged in
    eval mode)."""
    produced: dict[object, str] = {}
    read: dict[str, object] = {}
    calls: Counter = Counter()

    def recorder(name: str):
        def hook(module, inputs, output):
            calls[name] += 1
            if isinstance(module, nn.Conv2d):
                produced[output.grad_fn] = name
            else:
                read[name] = inputs[0].grad_fn

        return hook

    handles = [
        module.register_forward_hook(recorder(name))
        for name, module in network.named_modules()
        if isinstance(module, nn.Conv2d | nn.modules.batchnorm._BatchNorm)
    ]
    try:
        with torch.enable_grad():
            example = example.detach().requires_grad_(example.is_floating_point())
            output = network(example)
    finally:
        for handle in handles:
            handle.remove()
    consumers = _consumer_counts(output.grad_fn)
    pairs = []
    for norm, node in read.items():
        conv = produced.get(node)
        if conv is not None and calls[conv] == calls[norm] == 1 and consumers[node] == 1:
            pairs.append((conv, norm))
    return pairs


@torch.no_grad()
def fold_batchnorm(network: nn.Module, pairs: list[tuple[str, str]]) -> None:
    """Fold each BatchNorm of ``pairs`` into its convolution (computed in float64), in place;
    the BatchNorm becomes ``Identity``."""
    for conv_name, norm_name in pairs:
        conv, norm = network.get_submodule(conv_name), network.get_submodule(norm_name)
        scale = torch.rsqrt(norm.running_var.double() + norm.eps)
        if norm.affine:
            scale = scale * norm.weight.double()
        shift = -norm.running_mean.double() * scale
        if norm.affine:
            shift = shift + norm.bias.double()
        if conv.bias is not None:
            shift = shift + conv.bias.double() * scale
        weight = conv.weight.double() * scale.view(-1, *[1] * (conv.weight.ndim - 1))
        conv.weight.copy_(weight.to(conv.weight.dtype))
        conv.bias = nn.Parameter(shift.to(conv.weight.dtype))
        replace_module(network, norm_name, nn.Identity())


def finish_inference_copy(network: nn.Module, example: torch.Tensor, *, fold: bool,
                          channels_last: bool) -> None:
    """The last steps of every compiled copy, in place: BatchNorm folded where exact
    (``fold``), parameters frozen, and channels-last weights (``channels_last``)."""
    if fold:
        fold_batchnorm(network, conv_batchnorm_pairs(network, example))
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    if channels_last:
        network.to(memory_format=torch.channels_last)
