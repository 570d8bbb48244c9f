"""Which compiled path a model takes: a small table from model class to compiler.

Each method's compiled path lives in its own file of ``compile/`` and registers itself::

    @register_compiler(MyMethodModel)
    def compile_my_method(model: MyMethodModel, options: CompileOptions) -> nn.Module:
        ...  # an inference-only module: (B, ...) -> (M, B, K), equal to predict_members

(and ``compile/__init__.py`` imports that file). :func:`~ensemblekit.compile.compile_members`
looks the model's class up along its MRO (a subclass takes its parent's path unless it
registers its own) and checks the result against ``predict_members``; a model whose class has
no compiler runs its own one-pass forward (:class:`~.fallback.OwnForwardMembers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class CompileOptions:
    """What ``compile_members`` was asked for, checked; a compiler uses what applies to it.

    Attributes:
        strategy: "auto", "stacked" (all members in one network: grouped convolutions,
            batched matmuls) or "loop" (one network per member, one after the other).
        channels_last: run convolutions on channels-last tensors.
        fold_batchnorm_into_conv: fold each BatchNorm that reads only a convolution's output
            into that convolution.
        example_input: a small batch ``(b, ...)`` for dry runs and the self-check.
        share_prefix: run layers every member shares once (Masksembles).
    """

    strategy: str
    channels_last: bool
    fold_batchnorm_into_conv: bool
    example_input: torch.Tensor
    share_prefix: bool


Compiler = Callable[[nn.Module, CompileOptions], nn.Module]

_COMPILERS: dict[type, Compiler] = {}


def register_compiler(model_class: type) -> Callable[[Compiler], Compiler]:
    """Decorator: ``compile_members`` compiles instances of ``model_class`` (and of its
    subclasses without their own entry) with the decorated function."""

    def decorate(compiler: Compiler) -> Compiler:
        if model_class in _COMPILERS:
            raise ValueError(f"{model_class.__name__} already has a compiler "
                             f"({_COMPILERS[model_class].__name__})")
        _COMPILERS[model_class] = compiler
        return compiler

    return decorate


def compiler_for(model: nn.Module) -> Compiler | None:
    """The compiler registered for ``model``'s class or its nearest base class, or None."""
    for cls in type(model).__mro__:
        if cls in _COMPILERS:
            return _COMPILERS[cls]
    return None


def compiled_classes() -> list[type]:
    """The model classes with a registered compiler, in registration order."""
    return list(_COMPILERS)
