"""The steps every experiment shares: load the data, build, train, and evaluate one model.

Evaluation follows one protocol (stated in every report): the clean test set; the corrupted
test sets -- each corruption kind at each severity, read from a CIFAR-10-C-layout folder that
is generated once per output folder (or the official release), so that every method and seed
sees exactly the same corrupted images; and out-of-distribution detection against the dataset's
OOD pair. Metrics come from :func:`ensemblekit.evaluate.evaluate_model`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_write_text
from ..train import check_batch_size as check_model_batch_size
from .settings import Settings

Log = Callable[[str], None]

#: The metrics kept per corrupted set (and averaged over corruption kinds per severity).
SHIFT_METRICS = ("accuracy", "nll", "brier", "ece")
#: The metrics of the ensemble prediction kept on the validation split.
VALIDATION_METRICS = ("accuracy", "nll", "brier", "ece")
#: Bins of the stored OOD score histograms (in- vs out-of-distribution, per score).
OOD_HISTOGRAM_BINS = 40
#: Datasets larger than this (as float32) are streamed from disk instead of held in memory.
_IN_MEMORY_BYTES = 4 * 2**30


@dataclass
class ExperimentData:
    """Everything a run reads: ``(images, labels)`` tensors (or Datasets when too large).

    ``train`` excludes ``validation``: the fixed part of the training split held out by
    :func:`ensemblekit.data.split_validation` (``(images, labels)``, a ``Subset`` for streamed
    sets, or None when ``validation_fraction`` is 0 or no training split was loaded).
    ``ood`` is None when OOD evaluation is off (``ood_status`` says why: ``"off"`` or
    ``"missing: <reason>"``; ``"ok"`` otherwise). ``shift_folder`` is the CIFAR-10-C-layout
    folder of the corrupted test sets (None without corruptions).
    """

    name: str
    num_classes: int
    in_channels: int
    train: object
    test: object
    ood: torch.Tensor | None
    ood_name: str
    ood_status: str
    shift_folder: Path | None
    corruptions: list[str]
    severities: list[int]
    validation: object = None


def load_experiment_data(
    settings: Settings,
    *,
    ood: str = "none",
    corruptions: list[str] | tuple = (),
    severities: list[int] | tuple = (),
    corrupted_dir: str | None = None,
    with_train: bool = True,
    log: Log = print,
) -> ExperimentData:
    """Load train (unless ``with_train`` is False) and test splits, the OOD set (a missing one
    is reported, not fatal) and the corrupted test sets (generated into ``<out>/corrupted``
    unless ``corrupted_dir`` is given). The training split loses its validation part
    (``settings.validation_fraction``; None: the dataset's default) to ``validation``.
    """
    from .. import data

    info = data.dataset_info(settings.dataset)
    train = validation = None
    if with_train:
        train = _tensors_or_dataset(
            data.load_dataset(settings.dataset, "train", data_dir=settings.data_dir,
                              download=settings.download))
        fraction = getattr(settings, "validation_fraction", None)
        if fraction is None:
            fraction = data.default_validation_fraction(settings.dataset)
        train, validation = data.split_validation(train, fraction)
    test = _tensors_or_dataset(
        data.load_dataset(settings.dataset, "test", data_dir=settings.data_dir,
                          download=settings.download))
    ood_images, ood_status = None, "off"
    if ood != "none":
        try:
            ood_set = data.load_dataset(ood, "test", data_dir=settings.data_dir,
                                        download=settings.download)
        except (FileNotFoundError, RuntimeError) as error:
            reason = str(error).splitlines()[0]
            ood_status = f"missing: {reason}"
            log(f"note: OOD set {ood!r} is not available ({reason}); continuing without OOD "
                "metrics (pass --ood none to skip it, or --data-dir to point at it)")
        else:
            ood_images = data.as_tensors(ood_set)[0]
            shape = tuple(_images(test).shape[1:])
            if tuple(ood_images.shape[1:]) != shape:
                raise ValueError(
                    f"OOD set {ood!r} has inputs of shape {tuple(ood_images.shape[1:])}, but "
                    f"{settings.dataset!r} has {shape}; pick an OOD set of the same shape "
                    f"(the registered pair is {info.ood!r})")
            ood_status = "ok"
    shift_folder = None
    if corruptions:
        if corrupted_dir is not None:
            shift_folder = _check_corrupted_folder(Path(corrupted_dir), corruptions, severities)
        else:
            shift_folder = _generate_corrupted(test, Path(settings.out) / "corrupted",
                                               settings.dataset, list(corruptions),
                                               list(severities), log)
    return ExperimentData(
        name=settings.dataset,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        train=train,
        test=test,
        ood=ood_images,
        ood_name=ood,
        ood_status=ood_status,
        shift_folder=shift_folder,
        corruptions=list(corruptions),
        severities=list(severities),
        validation=validation,
    )


def build(settings: Settings, method: str, *, seed: int, **options):
    """``build_model`` of ``settings.backbone`` as ``method`` (``options`` override)."""
    from ..data import dataset_info
    from ..methods import build_model

    info = dataset_info(settings.dataset)
    return build_model(settings.backbone, method, info.num_classes, info.in_channels,
                       **{**settings.model_options(method, seed=seed), **options})


def check_batch_size(settings: Settings, model) -> None:
    """Refuse, before training, a batch size that the model's member groups do not divide."""
    check_model_batch_size(model, settings.train_config(seed=0).batch_size,
                           use="--batch-size {} (or change --members)")


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def train(settings: Settings, model, data: ExperimentData, *, seed: int,
          checkpoint_dir: Path | None = None) -> dict:
    """Train ``model`` in place; return ``{"seconds", "loss", "accuracy", "epochs"}``: the
    training loss and accuracy of the last epoch (the fit that under-fitting shows in).

    The validation split goes to the trainer only when early stopping watches it: otherwise
    it would cost an evaluation pass per epoch that nothing reads.
    """
    from ..train import train_model

    started = time.perf_counter()
    # the model's own method decides its epochs ([method_options.<method>] epochs)
    config = settings.train_config(seed=seed, method=getattr(model, "method", None))
    validation = data.validation if config.early_stopping_patience is not None else None
    history = train_model(model, data.train, config, checkpoint_dir=checkpoint_dir,
                          resume=checkpoint_dir is not None, validation_data=validation)
    return {"seconds": time.perf_counter() - started, "loss": history[-1]["loss"],
            "accuracy": history[-1]["accuracy"], "epochs": len(history)}


def evaluate(model, data: ExperimentData, *, seed: int, batch_size: int = 500,
             num_samples: int | None = None, shift: bool = True) -> dict:
    """The protocol on one trained model: a JSON-ready record (module docstring).

    Keys: ``test`` (scalar metrics of the clean test set, member diversity included),
    ``reliability`` (equal-width bins of the clean test set), ``shift``
    (``{severity: {kind: {metric}}}`` and ``shift_mean`` (``{severity: {metric: mean over
    kinds}}``) when there are corruptions, ``ood`` (``{score: {auroc, aupr, aupr_in, fpr95}}``)
    and ``ood_histograms`` when there is an OOD set. No latency: one timed batch is noise
    (see :mod:`ensemblekit.experiments.cost` for cost measured as it should be).
    """
    return _evaluate(model, data, seed=seed, batch_size=batch_size, num_samples=num_samples,
                     shift=shift, keep=False)[0]


def evaluate_run(model, data: ExperimentData, *, seed: int, batch_size: int = 500,
                 num_samples: int | None = None) -> tuple[dict, dict]:
    """:func:`evaluate`'s record plus the run's per-example predictions, which the paired
    bootstrap of :mod:`ensemblekit.experiments.verdicts` resamples.

    The predictions (tensors, lists and strings only: they load with ``weights_only=True``):

    - ``"labels"`` (N,) int64 and ``"test_probs"`` (N, K) float64: the clean test set's labels
      and mean member probabilities (the same stochastic passes as the record's ``test``);
    - with an OOD set, ``"ood_scores"``: ``{score: {"in": (N,), "out": (N_ood,)}}`` float64,
      the scores the record's AUROC is computed from (higher = more OOD);
    - with corruptions, ``"shift"``: ``{"severities": [str], "kinds": [str], "confidence":
      (S, C, N) float64 top-label confidence, "correct": (S, C, N) bool}`` for severity ``s``,
      kind ``c`` and test image ``n`` (row n of every corrupted set is test image n).
    """
    return _evaluate(model, data, seed=seed, batch_size=batch_size, num_samples=num_samples,
                     shift=True, keep=True)


def _evaluate(model, data: ExperimentData, *, seed: int, batch_size: int,
              num_samples: int | None, shift: bool, keep: bool) -> tuple[dict, dict | None]:
    from ..evaluate import evaluate_model

    if getattr(model, "method", None) != "mc_dropout":
        num_samples = None
    common = dict(dataset=data.name, batch_size=batch_size, num_samples=num_samples, seed=seed)
    with torch.no_grad():
        clean = evaluate_model(model, data.test, ood_data=data.ood, **common)
    record = {
        "test": _scalars(clean["test"]),
        "reliability": clean["test"]["reliability"],
    }
    predictions = None
    if keep:
        logits, labels = predict_split(model, data.test, data.name, batch_size=batch_size,
                                       num_samples=num_samples, seed=seed)
        predictions = {"labels": labels,
                       "test_probs": torch.softmax(logits.double(), dim=-1).mean(0)}
    if data.ood is not None:
        record["ood"] = clean["ood"]
        record["ood_histograms"] = ood_histograms(clean["arrays"]["ood_scores"],
                                                  data.num_classes, model.num_members)
        if keep:
            predictions["ood_scores"] = {
                kind: {side: torch.as_tensor(values[side], dtype=torch.float64)
                       for side in ("in", "out")}
                for kind, values in clean["arrays"]["ood_scores"].items()}
    if shift and data.shift_folder is not None:
        record["shift"], shifted = _shift_pass(model, data, seed=seed, batch_size=batch_size,
                                               num_samples=num_samples)
        record["shift_mean"] = {
            severity: {key: _mean([by_kind[kind][key] for kind in by_kind])
                       for key in SHIFT_METRICS}
            for severity, by_kind in record["shift"].items()
        }
        if keep:
            predictions["shift"] = shifted
    return record, predictions


def evaluate_validation(model, data: ExperimentData, *, seed: int, batch_size: int = 500,
                        num_samples: int | None = None) -> dict | None:
    """``{metric: value}`` of the ensemble prediction (the mean member probability) on
    ``data.validation`` for each of :data:`VALIDATION_METRICS` (``nll`` is its negative
    log-likelihood); None when there is no validation split."""
    from ..metrics import evaluate_predictions

    if data.validation is None:
        return None
    logits, labels = predict_split(model, data.validation, data.name, batch_size=batch_size,
                                   num_samples=num_samples, seed=seed)
    metrics = evaluate_predictions(logits, labels)
    return {key: metrics[key] for key in VALIDATION_METRICS}


def shift_metrics(model, data: ExperimentData, *, seed: int, batch_size: int = 500,
                  num_samples: int | None = None) -> dict:
    """``{severity: {kind: {metric}}}`` on the corrupted test sets of ``data.shift_folder``.

    All severities of one kind go through the model in one stream of batches (fewer, larger
    passes than one evaluation per set); metrics are then computed per severity.
    """
    return _shift_pass(model, data, seed=seed, batch_size=batch_size,
                       num_samples=num_samples)[0]


def _shift_pass(model, data: ExperimentData, *, seed: int, batch_size: int,
                num_samples: int | None) -> tuple[dict, dict]:
    """:func:`shift_metrics` and the per-example ``"shift"`` predictions of
    :func:`evaluate_run`."""
    from ..data import read_corrupted_folder
    from ..metrics import evaluate_predictions

    by_severity: dict[str, dict] = {str(severity): {} for severity in data.severities}
    confidence, correct = [], []
    for kind in data.corruptions:
        blocks = [read_corrupted_folder(data.shift_folder, kind, severity).tensors
                  for severity in data.severities]
        images = torch.cat([block[0] for block in blocks])
        logits = member_logits(model, images, data.name, batch_size=batch_size,
                               num_samples=num_samples, seed=seed)
        top, predicted = torch.softmax(logits.double(), dim=-1).mean(0).max(dim=-1)
        start = 0
        kind_confidence, kind_correct = [], []
        for severity, (_, labels) in zip(data.severities, blocks, strict=True):
            stop = start + len(labels)
            metrics = evaluate_predictions(logits[:, start:stop], labels)
            by_severity[str(severity)][kind] = {key: metrics[key] for key in SHIFT_METRICS}
            kind_confidence.append(top[start:stop])
            kind_correct.append(predicted[start:stop] == labels)
            start = stop
        confidence.append(torch.stack(kind_confidence))
        correct.append(torch.stack(kind_correct))
    arrays = {"severities": list(by_severity), "kinds": list(data.corruptions),
              "confidence": torch.stack(confidence, dim=1).contiguous(),
              "correct": torch.stack(correct, dim=1).contiguous()}
    return by_severity, arrays


def predict_split(model, split, dataset: str, *, batch_size: int = 500,
                  num_samples: int | None = None, seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Member logits ``(M, N, K)`` and labels ``(N,)`` of a split: ``(images, labels)``
    tensors or a Dataset of ``(image, label)`` pairs, read in order (see
    :func:`member_logits`)."""
    if isinstance(split, tuple):
        images, labels = split
        return member_logits(model, images, dataset, batch_size=batch_size,
                             num_samples=num_samples, seed=seed), labels.long()
    from torch.utils.data import DataLoader

    labels = []

    def images():  # streamed: a split too large for memory is never held whole
        for batch, batch_labels in DataLoader(split, batch_size=batch_size, shuffle=False):
            labels.append(torch.as_tensor(batch_labels))
            yield torch.as_tensor(batch)

    logits = member_logits(model, images(), dataset, batch_size=batch_size,
                           num_samples=num_samples, seed=seed)
    return logits, torch.cat(labels).long()


def member_logits(model, images, dataset: str, *, batch_size: int = 500,
                  num_samples: int | None = None, seed: int = 0) -> torch.Tensor:
    """Member logits ``(M, N, K)`` (on the CPU) of [0, 1] inputs ``(N, ...)`` (or an iterable
    of such batches), normalised for ``dataset``; stochastic members (MC-Dropout:
    ``num_samples`` passes) draw from ``seed``, batch after batch."""
    from ..data import normalizer
    from ..methods import predict_members

    normalize = normalizer(dataset)
    device = next(model.parameters()).device
    if getattr(model, "method", None) != "mc_dropout":
        num_samples = None
    if isinstance(images, torch.Tensor):
        # bound to its own name: the generator reads it lazily, after ``images`` is rebound
        tensor = images
        images = (tensor[start:start + batch_size]
                  for start in range(0, tensor.shape[0], batch_size))
    chunks = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            torch.no_grad():
        torch.manual_seed(seed)
        for batch in images:
            batch = batch.to(device)
            batch = normalize(batch) if normalize is not None else batch
            chunks.append(predict_members(model, batch, num_samples=num_samples).float().cpu())
    return torch.cat(chunks, dim=1)


def member_probabilities(model, images: torch.Tensor, dataset: str, *,
                         batch_size: int = 500, seed: int = 0) -> torch.Tensor:
    """Member probabilities ``(M, N, K)`` float64 of [0, 1] inputs (see :func:`member_logits`)."""
    logits = member_logits(model, images, dataset, batch_size=batch_size, seed=seed)
    return torch.softmax(logits.double(), dim=-1)


def ood_histograms(scores: dict, num_classes: int, num_members: int) -> dict:
    """``{score: {"edges", "in", "out"}}``: counts in fixed bins over each score's range.

    Ranges: msp in [0, 1 - 1/K], entropy and mutual information in [0, log K], variation
    ratio in [0, 1] -- the same edges for every method, so histograms compare directly. The
    logit scores (max_logit, energy) have no fixed range, hence no histogram.
    """
    upper = {"msp": 1.0 - 1.0 / num_classes, "entropy": math.log(num_classes),
             "mutual_information": math.log(num_classes), "variation_ratio": 1.0}
    histograms = {}
    for kind, values in scores.items():
        if kind not in upper:
            continue
        top = upper[kind]
        edges = torch.linspace(0.0, top, OOD_HISTOGRAM_BINS + 1, dtype=torch.float64)
        histograms[kind] = {"edges": edges.tolist()}
        for side in ("in", "out"):
            clipped = torch.as_tensor(values[side], dtype=torch.float64).clamp(0.0, top)
            histograms[kind][side] = torch.histc(clipped, OOD_HISTOGRAM_BINS, 0.0, top).long(
            ).tolist()
    return histograms


def _scalars(metrics: dict) -> dict:
    """The float-valued entries of a metrics dict (no matrices, counts or nested dicts);
    undefined values (nan: the disagreement of a single member) become None, valid JSON."""
    return {key: value if math.isfinite(value) else None for key, value in metrics.items()
            if isinstance(value, float) and not key.startswith("n_")}


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def _tensors_or_dataset(dataset):
    """In-memory ``(images, labels)`` when the set fits comfortably, else the Dataset."""
    from ..data import as_tensors

    first = dataset[0][0]
    if len(dataset) * torch.as_tensor(first).numel() * 4 > _IN_MEMORY_BYTES:
        return dataset
    return as_tensors(dataset)


def _images(data) -> torch.Tensor:
    if isinstance(data, tuple):
        return data[0]
    return torch.as_tensor(data[0][0]).unsqueeze(0)


def _generate_corrupted(test, folder: Path, dataset: str, kinds: list[str],
                        severities: list[int], log: Log) -> Path:
    """Write the corrupted test sets once; reuse them while dataset, kinds and severities match."""
    from ..data import as_tensors, write_corrupted_folder

    manifest = {"dataset": dataset, "kinds": kinds, "severities": severities, "seed": 0}
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest and all(
            (folder / f"{kind}.npy").is_file() for kind in kinds):
        return folder
    images = test if isinstance(test, tuple) else as_tensors(test)
    started = time.perf_counter()
    write_corrupted_folder(images, folder, kinds, severities, seed=0)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    log(f"corrupted test sets: {len(kinds)} kinds x {len(severities)} severities written to "
        f"{folder} ({time.perf_counter() - started:.1f} s)")
    return folder


def _check_corrupted_folder(folder: Path, kinds, severities) -> Path:
    missing = [f"{kind}.npy" for kind in kinds if not (folder / f"{kind}.npy").is_file()]
    if not (folder / "labels.npy").is_file():
        missing.append("labels.npy")
    if missing:
        raise ValueError(f"corrupted_dir {folder} lacks {', '.join(missing)}; point it at a "
                         "CIFAR-10-C-layout folder, or leave it unset to generate the sets")
    return folder
