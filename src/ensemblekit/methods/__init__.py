"""The ensemble spectrum behind one API: single, MC-Dropout, Masksembles, BatchEnsemble,
Packed-Ensembles, MIMO and Deep Ensembles, each turning any registered backbone into an
:class:`EnsembleModel`.

Every model trains the same way::

    model.train()
    loss = F.cross_entropy(model(x), model.training_targets(y))

and predicts the same way: ``predict_members(model, x)`` -> member logits ``(M, B, K)``
(a regression model, ``build_model(..., task="regression", num_outputs=D)``: Gaussian members,
:mod:`.task`).
"""

# isort: off
# Registration order is the spectrum: from one model to independent models.
from . import (  # noqa: F401
    single, mc_dropout, masksembles, batchensemble, packed_ensemble, mimo, deep_ensemble,
)

# isort: on
from . import claims
from .base import EnsembleModel, member_outputs, predict_members
from .batchensemble import BatchEnsembleModel
from .build import build_model
from .deep_ensemble import DeepEnsembleModel
from .masksembles import MasksemblesModel
from .mc_dropout import MCDropoutModel
from .member_masks import LayerMasks
from .mimo import MIMOModel
from .packed_ensemble import PackedEnsembleModel
from .registry import (
    MethodEntry,
    available_methods,
    get_method,
    method_entries,
    method_entry,
    method_with_role,
    register_method,
    unregister_method,
)
from .single import SingleModel
from .task import TASKS, gaussian_outputs, model_task

__all__ = [
    "BatchEnsembleModel",
    "DeepEnsembleModel",
    "EnsembleModel",
    "LayerMasks",
    "MCDropoutModel",
    "MIMOModel",
    "MasksemblesModel",
    "MethodEntry",
    "PackedEnsembleModel",
    "SingleModel",
    "TASKS",
    "available_methods",
    "claims",
    "build_model",
    "gaussian_outputs",
    "get_method",
    "method_entries",
    "method_entry",
    "member_outputs",
    "method_with_role",
    "model_task",
    "predict_members",
    "register_method",
    "unregister_method",
]
