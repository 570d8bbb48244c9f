"""Deep Ensembles' compiled path: the members' own networks, BatchNorm folded into each.

The members share no weights, so the work cannot shrink; what remains is doing it well: each
member's BatchNorm folded into its convolutions, channels-last convolutions, and the members
either looped or stacked into one network of grouped convolutions and batched matmuls
(:mod:`.dense`). ``predict_members`` loops on the CPU and vmaps elsewhere; ``torch.func.vmap``
turns every convolution into a grouped one as stacking does, but pays its own overhead on top
and cannot fold BatchNorm (``benchmarks/RESULTS.md`` has the three side by side).
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
