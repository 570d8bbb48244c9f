"""``compile_members`` for Packed-Ensembles: BatchNorm folded, the fastest exact layout.

A Packed-Ensembles model already predicts all n members in one forward of the ordinary batch;
what compiling changes is how the same arithmetic is laid out:

* ``"stacked"``: the packed network as it is (grouped convolutions, batched matmuls), one
  call for all members, ``(B, ...) -> (B, n*K)``;
* ``"loop"``: the n member networks (:meth:`PackedEnsembleModel.member_network`: dense
  convolutions of the member's width), one after the other, ``(B, ...) -> (B, K)`` each.

Both fold every BatchNorm into the convolution before it and can run channels-last. Measured
(``benchmarks/cheap_ensembles.py --threads 1``, batch 256, n=4, alpha=2, four runs on a shared
2-core CPU; benchmarks/RESULTS.md): on ResNet-20 the loop runs at 0.88-1.02x the single
model's ``predict_members`` latency and 1.06-1.44x the single network compiled the same way
(1.5-2.0x faster than stacked), against 2.2-2.3x for the packed network as trained: its
BatchNorm, ReLU and residual adds stream activations twice the single model's size (32 MiB
per stage-1 map at batch 256), while each member's quarter stays in cache. LeNet and the MLP,
whose few small layers would pay n times the per-call overhead in a loop, run stacked (LeNet:
0.77-0.99x single, looped 2.09x).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..methods.packed_ensemble import PackedEnsembleModel
from .folding import conv_batchnorm_pairs, fold_batchnorm

#: on the CPU, packed backbones with more convolutions than this (besides the stem) loop
DEEP_CONV_NET = 2


def resolve_packed_strategy(model: PackedEnsembleModel) -> str:
    """What ``strategy="auto"`` picks for a Packed-Ensembles model: "loop" for a deep
    convolutional backbone on the CPU (ResNets), "stacked" otherwise (LeNet, MLP; and on an
    accelerator, where one grouped kernel per layer beats n launches)."""
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    on_cpu = next(model.parameters()).device.type == "cpu"
    return "loop" if on_cpu and len(convs) - 1 > DEEP_CONV_NET else "stacked"


def packed_networks(model: PackedEnsembleModel, strategy: str, *, channels_last: bool,
                    fold_batchnorm_into_conv: bool, example: torch.Tensor) -> list[nn.Module]:
    """The inference-only networks of ``strategy`` ("stacked": one packed network; "loop":
    the n member networks), BatchNorm folded (pairs found on ``example``), frozen, in the
    requested memory format (channels-last, or contiguous: a graph file has no format)."""
    if strategy == "stacked":
        networks = [copy.deepcopy(model.backbone)]
    else:
        networks = [model.member_network(m) for m in range(model.num_members)]
    for network in networks:
        network.train(False)
        if fold_batchnorm_into_conv:
            fold_batchnorm(network, conv_batchnorm_pairs(network, example))
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        network.to(memory_format=torch.channels_last if channels_last
                   else torch.contiguous_format)
    return networks
