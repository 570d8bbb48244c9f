r"""BatchEnsemble's compiled path: each member a dense network with its effective weights.

Member m of a BatchEnsemble layer computes ``((x * r_m) W^T) * s_m + b_m``, a plain layer with
weight :math:`W_m = W \circ (s_m r_m^\top)` and bias ``b_m``
(:meth:`~ensemblekit.layers.batchensemble.BatchEnsembleLinear.effective_weight`). The compiled
members replace every BatchEnsemble layer of a copy of the backbone by that plain layer, one
copy per member (:func:`member_network`), and run them as :mod:`.dense` does: looped or stacked
into grouped convolutions, each member's BatchNorm folded into the convolution before it.

BatchNorm is shared by the members and sits after each member's convolution: in eval mode it is
the per-channel affine map ``y -> (y - mean) * gamma / sqrt(var + eps) + beta`` of that
convolution's output, the same map for every member, so folding it into member m's convolution
(``W_m`` and ``b_m`` scaled and shifted per output channel) is exact for every member.

The model's own one-pass forward tiles the input M times and spends a pass over every
activation on each of ``r``, ``s`` and BatchNorm; the compiled members do the convolutions
alone. Measured (``benchmarks/inference.py --sections methods``, M=4, batch 256, one CPU
thread, two runs): 0.24-0.27x its time on ResNet-20 (looped; stacked 0.44-0.54x) and
0.29-0.32x on LeNet (stacked; looped 0.43-0.44x), so this is the path taken, with
``strategy="auto"`` choosing as for Deep Ensembles (:func:`~.dense.dense_strategy`).

A network whose member networks cannot be built (a grouped BatchEnsemble convolution) or do not
reproduce ``predict_members`` on the example (a forward that mixes the tiled rows) runs the
model's own forward instead (:class:`~.fallback.OwnForwardMembers`): slower, never wrong.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..layers.batchensemble import BATCHENSEMBLE_LAYERS, BatchEnsembleLinear
from ..methods.batchensemble import BatchEnsembleModel
from ..submodules import replace_module
from .compiled import reproduces
from .dense import compile_dense, dense_strategy
from .fallback import OwnForwardMembers
from .registry import CompileOptions, register_compiler

#: plain convolution classes by number of spatial dims
_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _plain_layer(layer: nn.Module, member: int) -> nn.Module:
    """Member ``member``'s plain twin of a BatchEnsemble layer: weight ``W * s_m r_m^T``, bias
    ``b_m``."""
    weight = layer.effective_weight().detach()[member]  # raises for a grouped convolution
    bias = layer.bias is not None
    factory = {"device": weight.device, "dtype": weight.dtype}
    if isinstance(layer, BatchEnsembleLinear):
        plain = nn.Linear(layer.in_features, layer.out_features, bias=bias, **factory)
    else:
        plain = _CONVS[layer.dims](layer.in_channels, layer.out_channels, layer.kernel_size,
                                   stride=layer.stride, padding=layer.padding,
                                   dilation=layer.dilation, bias=bias, **factory)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if bias:
            plain.bias.copy_(layer.bias[member])
    return plain


def member_network(backbone: nn.Module, member: int) -> nn.Module:
    """A copy of ``backbone`` (eval mode) whose BatchEnsemble layers are member ``member``'s
    plain layers: ``(B, ...) -> (B, K)``, that member's logits."""
    if isinstance(backbone, BATCHENSEMBLE_LAYERS):  # a converted network of one layer
        return _plain_layer(backbone, member)
    network = copy.deepcopy(backbone).train(False)
    for name, module in backbone.named_modules():
        if isinstance(module, BATCHENSEMBLE_LAYERS):
            replace_module(network, name, _plain_layer(module, member))
    return network


@register_compiler(BatchEnsembleModel)
def compile_batchensemble(model: BatchEnsembleModel, options: CompileOptions) -> nn.Module:
    """Dense member networks looped or stacked (module docstring), else the own forward."""
    try:
        networks = [member_network(model.backbone, m) for m in range(model.num_members)]
    except NotImplementedError:
        return OwnForwardMembers(model)
    compiled = compile_dense(networks, options, dense_strategy(options.strategy, networks[0]))
    return compiled if reproduces(model, compiled, options.example_input) else \
        OwnForwardMembers(model)
