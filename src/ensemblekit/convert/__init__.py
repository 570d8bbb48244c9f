"""Turn your own model into an ensemble model: Masksembles, MC-Dropout, BatchEnsemble or
Packed-Ensembles.

Each converter changes the model in place (nested modules included) and returns it wrapped in
the method's :class:`~ensemblekit.methods.EnsembleModel`, so the training contract and
:func:`ensemblekit.predict_members` work exactly as for models from ``build_model``::

    model = to_masksembles(my_net, n=4, scale=2.0, example_input=x[:8])
    loss = F.cross_entropy(model(x), model.training_targets(y))    # B a multiple of 4
    member_logits = predict_members(model, x)                      # (4, B, K)

Drop sites are the network's dropout layers, or, with ``sites`` (module paths such as
``["avgpool"]``, or a predicate ``(path, module) -> bool``), places after chosen modules, for a
network without dropout (torchvision's ResNets).

Your network is ``model.backbone`` (so its ``state_dict`` keys gain a ``backbone.`` prefix; a
site inserted after module ``a.b`` makes it ``a.b.0``, the new layer ``a.b.1``);
``model.config`` is ``None`` and ``model.recipe`` records what the converter did (a
JSON-serialisable dict: converter, options, every site with its resolved width, the dropout
modules a dry forward never called, the example input's shape and dtype), so
:func:`ensemblekit.save` / ``load(path, into=network)`` rebuild the model on a fresh copy of
your network without a dry run (:func:`apply_recipe`), and ``compile_members(model)`` /
``export(model, path)`` need no second example. Anything a converter cannot handle raises a
``ValueError`` that names the module's path and the reason.

``to_packed_ensemble`` is the one converter that rebuilds rather than wraps: every conv /
linear layer widened and grouped into a fresh Packed-Ensemble of your architecture (its
module docstring).

One file per converter (:mod:`.masksembles`, :mod:`.mc_dropout`, :mod:`.batchensemble`,
:mod:`.packed_ensemble`), the
site machinery they share (:mod:`._sites`), and the registry that replays a recipe
(:mod:`.recipe`).
"""

from ._sites import Sites
from .batchensemble import to_batchensemble
from .masksembles import to_masksembles
from .mc_dropout import to_mc_dropout
from .packed_ensemble import to_packed_ensemble
from .recipe import CONVERTERS, apply_recipe

__all__ = [
    "CONVERTERS",
    "Sites",
    "apply_recipe",
    "to_batchensemble",
    "to_masksembles",
    "to_mc_dropout",
    "to_packed_ensemble",
]
