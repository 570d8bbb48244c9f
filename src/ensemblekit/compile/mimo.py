r"""Compiled MIMO members: a single model's forward, BatchNorm folded.

At inference every slot of a MIMO network reads the same input, so its stem computes
:math:`\sum_j W_j * x = (\sum_j W_j) * x`: one convolution over the C channels of the input
with the slot weights summed, instead of one over M*C channels of a tiled, stacked copy of it.
The compiled copy of the backbone has that plain stem (summed in float64), a plain head
writing ``(B, M*K)`` (member-major on dim 1), and every BatchNorm that reads only a
convolution folded into it (:mod:`.folding`): the single model's architecture with M*K
outputs, exact up to rounding (checked against ``predict_members`` as it is built).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..layers.mimo import MIMOConv2d, MIMOLinear
from ..methods.mimo import MIMOModel
from ..submodules import replace_module
from .compiled import CompiledMembers
from .folding import finish_inference_copy
from .registry import CompileOptions, register_compiler


@torch.no_grad()
def summed_stem(stem: MIMOConv2d) -> nn.Conv2d:
    """A plain convolution over ``stem.slot_channels`` channels whose weight is the sum of the
    slot weights: what ``stem`` computes when every slot reads the same input."""
    conv = nn.Conv2d(stem.slot_channels, stem.out_channels, stem.kernel_size, stride=stem.stride,
                     padding=stem.padding, dilation=stem.dilation, bias=stem.bias is not None,
                     padding_mode=stem.padding_mode).to(stem.weight)
    conv.weight.copy_(stem.slot_weights().double().sum(0).to(stem.weight.dtype))
    if stem.bias is not None:
        conv.bias.copy_(stem.bias)
    return conv


@torch.no_grad()
def plain_end(layer: MIMOLinear) -> nn.Linear:
    """A plain ``nn.Linear`` for a MIMO stem and / or head: a stem's slot columns summed (every
    slot reads the same input), a head left writing ``(B, M*K)`` without unstacking."""
    weight = layer.weight
    if layer.stem:
        weight = weight.double().unflatten(1, (layer.members, -1)).sum(1).to(weight.dtype)
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.bias is not None)
    linear.to(weight)
    linear.weight.copy_(weight)
    if layer.bias is not None:
        linear.bias.copy_(layer.bias)
    return linear


def mimo_network(model: MIMOModel, example: torch.Tensor, *, channels_last: bool,
                 fold_batchnorm_into_conv: bool) -> nn.Module:
    """An inference-only copy of ``model.backbone``: ``(B, ...) -> (B, M*K)``, member-major on
    dim 1, with the summed stem, a plain head and (optionally) BatchNorm folded."""
    network = copy.deepcopy(model.backbone).eval()
    for name, module in list(network.named_modules()):
        if isinstance(module, MIMOConv2d):
            replace_module(network, name, summed_stem(module))
        elif isinstance(module, MIMOLinear):
            replace_module(network, name, plain_end(module))
    finish_inference_copy(network, example, fold=fold_batchnorm_into_conv,
                          channels_last=channels_last)
    return network


@register_compiler(MIMOModel)
def compile_mimo(model: MIMOModel, options: CompileOptions) -> CompiledMembers:
    """``(B, ...) -> (M, B, K)`` from one folded copy of the backbone (module docstring).

    ``strategy`` and ``share_prefix`` do not apply: the members already run as one network
    (as for the single model, every strategy gives this one path)."""
    network = mimo_network(model, options.example_input, channels_last=options.channels_last,
                           fold_batchnorm_into_conv=options.fold_batchnorm_into_conv)
    return CompiledMembers([network], model.num_members, "mimo", options.channels_last)
