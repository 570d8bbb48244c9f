"""Backbones, each written once against a :class:`LayerFactory` and registered by name.

Import this package to register every backbone; :func:`ensemblekit.build_model` combines a
backbone with a method from :mod:`ensemblekit.methods`.
"""

from . import imagenet, lenet, mlp, resnet  # noqa: F401  (registers the backbones)
from .base import Backbone, LayerWidth
from .factory import LayerFactory
from .registry import available_backbones, get_backbone, register_backbone

__all__ = [
    "Backbone",
    "LayerFactory",
    "LayerWidth",
    "available_backbones",
    "get_backbone",
    "register_backbone",
]
