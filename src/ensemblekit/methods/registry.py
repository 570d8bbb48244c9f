"""The registry of methods: ``@register_method("name")`` on a builder.

A method builder has the signature ``builder(make_backbone, *, seed, **options) ->
EnsembleModel``. ``make_backbone(layers, seed)`` builds the chosen backbone from the method's
:class:`~ensemblekit.models.LayerFactory` with parameters initialised from ``seed``; the
builder's keyword options (``n``, ``scale``, ``p``...) are what :func:`ensemblekit.build_model`
accepts for the method.
"""

from __future__ import annotations

from ..models.registry import Registry

METHODS = Registry("method")
register_method = METHODS.register
#: method names in registration order: the spectrum from single to deep_ensemble
available_methods = METHODS.names
get_method = METHODS.get
