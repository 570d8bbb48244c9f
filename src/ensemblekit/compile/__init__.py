"""Fast inference-only members for every ensemble model: ``compile_members(model)``.

``compile_members(model)`` returns a module giving the same member logits ``(M, B, K)`` as
``predict_members(model, x)``, by the compiled path the model's method registered
(:mod:`.registry`; one file per method: :mod:`.masksembles` -- each member on the channels its
masks keep --, :mod:`.fan_out` for MC-Dropout, :mod:`.single`, :mod:`.deep_ensemble`,
:mod:`.batchensemble`, :mod:`.mimo`, :mod:`.packed` -- BatchNorm folded, the
fastest exact layout), or its own one-pass forward for a method without one
(:mod:`.fallback`). A new method adds its file and imports it below.
"""

from . import (  # noqa: F401 (each registers its compiler)
    batchensemble,
    deep_ensemble,
    fan_out,
    masksembles,
    mimo,
    packed,
    single,
)
from .compiled import STRATEGIES, CompiledMembers, compile_members
from .fallback import OwnForwardMembers
from .fan_out import FanOutMembers
from .masksembles import resolve_strategy
from .registry import CompileOptions, compiled_classes, register_compiler

__all__ = ["STRATEGIES", "CompileOptions", "CompiledMembers", "FanOutMembers",
           "OwnForwardMembers", "compile_members", "compiled_classes", "register_compiler",
           "resolve_strategy"]
