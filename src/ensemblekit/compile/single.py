"""The single model's compiled path: its network, BatchNorm folded, convolutions channels-last.

One member, so nothing to share or stack: the fastest exact path is the network itself with
every BatchNorm that reads only a convolution's output folded into that convolution (one pass
over each activation instead of two) and channels-last convolutions (:mod:`.dense`).
"""

from __future__ import annotations

from ..methods.single import SingleModel
from .compiled import CompiledMembers
from .dense import compile_dense
from .registry import CompileOptions, register_compiler


@register_compiler(SingleModel)
def compile_single(model: SingleModel, options: CompileOptions) -> CompiledMembers:
    """``(B, ...) -> (1, B, K)`` from a folded copy of ``model.backbone``."""
    return compile_dense([model.backbone], options, "one network")
