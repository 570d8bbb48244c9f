"""Deep Ensembles' compiled path: the members' own networks, BatchNorm folded into each.

The members share no weights, so the work cannot shrink; what remains is doing it well: each
member's BatchNorm folded into its convolutions, channels-last convolutions, and the members
either looped or stacked into one network of grouped convolutions and batched matmuls
(:mod:`.dense`). ``predict_members`` loops on the CPU and vmaps elsewhere; ``torch.func.vmap``
turns every convolution into a grouped one as stacking does, but pays its own overhead on top
and cannot fold BatchNorm.

Measured (``benchmarks/inference.py --sections methods``, M=4, batch 256, one CPU thread, two
runs): against ``predict_members``' loop, the compiled loop takes 0.62-0.68x its time on
ResNet-20 (stacked 1.22-1.26x, vmap 2.5-2.6x) and the compiled stack 0.42-0.53x on LeNet
(loop 0.61-0.70x): ``strategy="auto"`` loops for deep convolutional backbones on the CPU and
stacks otherwise (:func:`~.dense.dense_strategy`).
"""

from __future__ import annotations

from ..methods.deep_ensemble import DeepEnsembleModel
from .compiled import CompiledMembers
from .dense import compile_dense, dense_strategy
from .registry import CompileOptions, register_compiler


@register_compiler(DeepEnsembleModel)
def compile_deep_ensemble(model: DeepEnsembleModel, options: CompileOptions) -> CompiledMembers:
    """``(B, ...) -> (M, B, K)`` from folded copies of ``model.members``, looped or stacked."""
    members = list(model.members)
    return compile_dense(members, options, dense_strategy(options.strategy, members[0]))
