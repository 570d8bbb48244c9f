"""A small registry (timm style): ``@register_backbone("name")`` on a builder.

A backbone builder has the signature ``builder(layers, num_classes, in_channels, *, width=1.0,
...)`` and returns a :class:`~ensemblekit.models.base.Backbone`; its keyword arguments are the
backbone's options that :func:`ensemblekit.build_model` accepts.
"""

from __future__ import annotations

from collections.abc import Callable

from .._validation import check_choice


class Registry:
    """Builders by name, in registration order; ``kind`` names them in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        """Decorator: register ``builder`` as ``name``."""

        def decorate(builder: Callable) -> Callable:
            if name in self._builders:
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            self._builders[name] = builder
            return builder

        return decorate

    def names(self) -> list[str]:
        return list(self._builders)

    def get(self, name: str) -> Callable:
        """The builder registered as ``name``; unknown names raise listing the valid ones."""
        check_choice(self.kind, name, self._builders)
        return self._builders[name]


BACKBONES = Registry("backbone")
register_backbone = BACKBONES.register
available_backbones = BACKBONES.names
get_backbone = BACKBONES.get
