"""Fast Masksembles inference: each member runs on the channels its masks keep.

``compile_members(model)`` turns a Masksembles model into an inference-only module returning
the same member logits ``(M, B, K)`` as ``predict_members(model, x)`` at about ``M * k^2`` of
one model's work (k the masks' keep fraction) instead of M; a Packed-Ensembles model compiles
to its fastest exact layout (BatchNorm folded; :mod:`ensemblekit.compile.packed`).
"""

from .compiled import STRATEGIES, CompiledMembers, compile_members, resolve_strategy
from .fan_out import FanOutMembers

__all__ = ["STRATEGIES", "CompiledMembers", "FanOutMembers", "compile_members",
           "resolve_strategy"]
