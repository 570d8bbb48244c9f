"""ensemblekit: cheap, ensemble-like uncertainty estimation centred on Masksembles.

The names most users need are re-exported here; each lives in the module named beside it:

- masks and layers: :func:`generate_masks`, :class:`Masksembles` (``ensemblekit.masks``,
  ``ensemblekit.layers``), :class:`BatchEnsembleLinear` / :class:`BatchEnsembleConv2d`,
  :class:`PackedLinear` / :class:`PackedConv2d` / :class:`PackedConv1d`
  (``ensemblekit.layers.packed``), :class:`PackedLayerNorm` / :class:`PackedGroupNorm`
  (``ensemblekit.layers.packed_norm``);
- methods on shared backbones: :func:`build_model`, :func:`predict_members` (member logits
  ``(M, B, K)`` for every method; ``GaussianMembers`` for a model built with
  ``task="regression"``), conversions of your own model (``ensemblekit.convert``);
- fast inference: :func:`compile_members` (``ensemblekit.compile``); deployment:
  :func:`export` (ONNX / torch.export graph with the uncertainty outputs, ``ensemblekit.export``);
- training, evaluation and checkpoints: :func:`train_model`, :func:`evaluate_model`,
  :func:`save` / :func:`load` (``ensemblekit.train``, ``.evaluate``, ``.checkpoint``);
- metrics: :func:`evaluate_predictions`, selective prediction (:func:`aurc`, :func:`augrc`,
  :func:`e_aurc`, :func:`risk_coverage_curve`) and the rest of ``ensemblekit.metrics``;
- post-hoc calibration on logits: :func:`fit_temperature`, :class:`TemperatureScaler` and the
  rest of ``ensemblekit.calibration`` (vector scaling, ensemble temperature, saving);
- data: :func:`load_dataset`, :func:`corrupt`, :func:`ood_dataset` (``ensemblekit.data``).
- regression: ``build_model(..., task="regression", num_outputs=D)`` for every method;
  members' Gaussians :class:`GaussianMembers` ``(means, variances)``, each ``(M, B, D)``, read
  from the raw head by :func:`gaussian_outputs`; :func:`evaluate_regression` (every
  regression metric, streamed) and :func:`moment_match`; losses and the variance head
  (``ensemblekit.losses``); variance scaling and split-conformal intervals
  (:func:`fit_variance_scaling`, :func:`conformal_intervals`); regression sets ``diabetes``,
  the toys and ``uci-<name>`` through :func:`load_dataset`.
"""

from .calibration import (
    TemperatureScaler,
    VarianceScaler,
    conformal_intervals,
    fit_temperature,
    fit_variance_scaling,
)
from .checkpoint import load, load_into, save
from .compile import CompiledMembers, compile_members
from .convert import to_batchensemble, to_masksembles, to_mc_dropout, to_packed_ensemble
from .data import (
    CORRUPTIONS,
    SEVERITIES,
    available_datasets,
    corrupt,
    dataset_info,
    load_dataset,
    make_corrupted,
    ood_dataset,
)
from .evaluate import evaluate_model
from .export import export
from .layers import Masksembles, Masksembles1d, Masksembles2d, Masksembles3d
from .layers.batchensemble import (
    BatchEnsembleConv2d,
    BatchEnsembleLinear,
    batchensemble_parameter_groups,
)
from .layers.packed import PackedConv1d, PackedConv2d, PackedLinear
from .layers.packed_norm import PackedGroupNorm, PackedLayerNorm
from .masks import generate_masks, mask_stats
from .members import GaussianMembers, repeat_members, split_members
from .methods import (
    EnsembleModel,
    available_methods,
    build_model,
    gaussian_outputs,
    predict_members,
)
from .metrics import (
    PredictionAccumulator,
    RegressionAccumulator,
    augrc,
    aurc,
    e_aurc,
    evaluate_predictions,
    evaluate_regression,
    moment_match,
    risk_coverage_curve,
    weight_similarity,
)
from .models import available_backbones
from .samplers import MemberBatchSampler
from .seeding import seed_everything
from .train import TrainConfig, train_model

__version__ = "0.1.0"

__all__ = [
    "CORRUPTIONS",
    "SEVERITIES",
    "BatchEnsembleConv2d",
    "BatchEnsembleLinear",
    "CompiledMembers",
    "EnsembleModel",
    "GaussianMembers",
    "Masksembles",
    "Masksembles1d",
    "Masksembles2d",
    "Masksembles3d",
    "PackedConv1d",
    "PackedConv2d",
    "PackedGroupNorm",
    "PackedLayerNorm",
    "PackedLinear",
    "MemberBatchSampler",
    "PredictionAccumulator",
    "RegressionAccumulator",
    "TemperatureScaler",
    "TrainConfig",
    "VarianceScaler",
    "augrc",
    "aurc",
    "available_backbones",
    "available_datasets",
    "available_methods",
    "batchensemble_parameter_groups",
    "build_model",
    "compile_members",
    "conformal_intervals",
    "corrupt",
    "dataset_info",
    "e_aurc",
    "evaluate_model",
    "evaluate_predictions",
    "evaluate_regression",
    "export",
    "fit_temperature",
    "fit_variance_scaling",
    "gaussian_outputs",
    "generate_masks",
    "load",
    "load_dataset",
    "load_into",
    "make_corrupted",
    "mask_stats",
    "moment_match",
    "ood_dataset",
    "predict_members",
    "repeat_members",
    "risk_coverage_curve",
    "save",
    "seed_everything",
    "split_members",
    "to_batchensemble",
    "to_masksembles",
    "to_mc_dropout",
    "to_packed_ensemble",
    "train_model",
    "weight_similarity",
]
