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

from torch import nn

from ..methods.packed_ensemble import PackedEnsembleModel
from .compiled import CompiledMembers, loops_on_this_device
from .folding import finish_inference_copy
from .registry import CompileOptions, register_compiler


def resolve_packed_strategy(model: PackedEnsembleModel) -> str:
    """What ``strategy="auto"`` picks for a Packed-Ensembles model: "loop" for a deep
    convolutional backbone on the CPU (ResNets), "stacked" otherwise (LeNet, MLP; and on an
    accelerator, where one grouped kernel per layer beats n launches)."""
    return "loop" if loops_on_this_device(model.backbone) else "stacked"


def packed_networks(model: PackedEnsembleModel, strategy: str, options: CompileOptions
                    ) -> list[nn.Module]:
    """The inference-only networks of ``strategy`` ("stacked": one packed network; "loop":
    the n member networks), BatchNorm folded (pairs found on the example), frozen, and
    channels-last where ``options`` ask."""
    if strategy == "stacked":
        networks = [copy.deepcopy(model.backbone).train(False)]
    else:
        networks = [model.member_network(m).train(False) for m in range(model.num_members)]
    for network in networks:
        finish_inference_copy(network, options.example_input,
                              fold=options.fold_batchnorm_into_conv,
                              channels_last=options.channels_last)
    return networks


@register_compiler(PackedEnsembleModel)
def compile_packed(model: PackedEnsembleModel, options: CompileOptions) -> CompiledMembers:
    """``(B, ...) -> (M, B, K)`` by the requested or measured-fastest layout (module
    docstring). ``share_prefix`` does not apply: the members share no layer."""
    strategy = options.strategy
    if strategy == "auto":
        strategy = resolve_packed_strategy(model)
    networks = packed_networks(model, strategy, options)
    return CompiledMembers(networks, model.num_members, strategy, options.channels_last)
