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
from .settings import Settings

Log = Callable[[str], None]

#: The metrics kept per corrupted set (and averaged over corruption kinds per severity).
SHIFT_METRICS = ("accuracy", "nll", "brier", "ece")
#: Bins of the stored OOD score histograms (in- vs out-of-distribution, per score).
OOD_HISTOGRAM_BINS = 40
#: Datasets larger than this (as float32) are streamed from disk instead of held in memory.
_IN_MEMORY_BYTES = 4 * 2**30


@dataclass
class ExperimentData:
    """Everything a run reads: ``(images, labels)`` tensors (or Datasets when too large).

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
    unless ``corrupted_dir`` is given).
    """
    from .. import data

    info = data.dataset_info(settings.dataset)
    train = None
    if with_train:
        train = _tensors_or_dataset(
            data.load_dataset(settings.dataset, "train", data_dir=settings.data_dir,
                              download=settings.download))
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
    batch_size = settings.train_config(seed=0).batch_size
    multiple = getattr(model, "batch_multiple", 1)
    if batch_size % multiple:
        nearest = max(multiple, round(batch_size / multiple) * multiple)
        raise ValueError(
            f"batch_size={batch_size} is not a multiple of {multiple}, the number of member "
            f"groups of {model.method} with {model.num_members} members; use --batch-size "
            f"{nearest} (or change --members)")


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def train(settings: Settings, model, data: ExperimentData, *, seed: int,
          checkpoint_dir: Path | None = None) -> dict:
    """Train ``model`` in place; return ``{"seconds", "loss", "accuracy"}`` of the last epoch."""
    from ..train import train_model

    started = time.perf_counter()
    # the model's own method decides its epochs ([method_options.<method>] epochs)
    config = settings.train_config(seed=seed, method=getattr(model, "method", None))
    history = train_model(model, data.train, config,
                          checkpoint_dir=checkpoint_dir, resume=checkpoint_dir is not None)
    return {"seconds": time.perf_counter() - started, "loss": history[-1]["loss"],
            "accuracy": history[-1]["accuracy"], "epochs": len(history)}


def evaluate(model, data: ExperimentData, *, seed: int, batch_size: int = 500,
             num_samples: int | None = None, shift: bool = True) -> dict:
    """The protocol on one trained model: a JSON-ready record (module docstring).

    Keys: ``test`` (scalar metrics of the clean test set, member diversity included),
    ``reliability`` (equal-width bins of the clean test set), ``shift``
    (``{severity: {kind: {metric}}}`` and ``shift_mean`` (``{severity: {metric: mean over
    kinds}}``) when there are corruptions, ``ood`` (``{score: {auroc, aupr, aupr_in, fpr95}}``)
    and ``ood_histograms`` when there is an OOD set, ``inference_ms_per_sample``.
    """
    from ..evaluate import evaluate_model

    if getattr(model, "method", None) != "mc_dropout":
        num_samples = None
    common = dict(dataset=data.name, batch_size=batch_size, num_samples=num_samples, seed=seed)
    with torch.no_grad():
        clean = evaluate_model(model, data.test, ood_data=data.ood, **common)
    record = {
        "test": _scalars(clean["test"]),
        "reliability": clean["test"]["reliability"],
        "inference_ms_per_sample": clean["inference_ms_per_sample"],
    }
    if data.ood is not None:
        record["ood"] = clean["ood"]
        record["ood_histograms"] = ood_histograms(clean["arrays"]["ood_scores"],
                                                  data.num_classes, model.num_members)
    if shift and data.shift_folder is not None:
        record["shift"] = shift_metrics(model, data, seed=seed, batch_size=batch_size,
                                        num_samples=num_samples)
        record["shift_mean"] = {
            severity: {key: _mean([by_kind[kind][key] for kind in by_kind])
                       for key in SHIFT_METRICS}
            for severity, by_kind in record["shift"].items()
        }
    return record


def shift_metrics(model, data: ExperimentData, *, seed: int, batch_size: int = 500,
                  num_samples: int | None = None) -> dict:
    """``{severity: {kind: {metric}}}`` on the corrupted test sets of ``data.shift_folder``.

    All severities of one kind go through the model in one stream of batches (fewer, larger
    passes than one evaluation per set); metrics are then computed per severity.
    """
    from ..data import read_corrupted_folder
    from ..metrics import evaluate_predictions

    by_severity: dict[str, dict] = {str(severity): {} for severity in data.severities}
    for kind in data.corruptions:
        blocks = [read_corrupted_folder(data.shift_folder, kind, severity).tensors
                  for severity in data.severities]
        images = torch.cat([block[0] for block in blocks])
        logits = member_logits(model, images, data.name, batch_size=batch_size,
                               num_samples=num_samples, seed=seed)
        start = 0
        for severity, (_, labels) in zip(data.severities, blocks, strict=True):
            metrics = evaluate_predictions(logits[:, start:start + len(labels)], labels)
            by_severity[str(severity)][kind] = {key: metrics[key] for key in SHIFT_METRICS}
            start += len(labels)
    return by_severity


def member_logits(model, images: torch.Tensor, dataset: str, *, batch_size: int = 500,
                  num_samples: int | None = None, seed: int = 0) -> torch.Tensor:
    """Member logits ``(M, N, K)`` (on the CPU) of [0, 1] inputs ``(N, ...)``, normalised for
    ``dataset``; stochastic members (MC-Dropout: ``num_samples`` passes) draw from ``seed``."""
    from ..data import normalizer
    from ..methods import predict_members

    normalize = normalizer(dataset)
    device = next(model.parameters()).device
    if getattr(model, "method", None) != "mc_dropout":
        num_samples = None
    chunks = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size].to(device)
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
    ratio in [0, 1] -- the same edges for every method, so histograms compare directly.
    """
    upper = {"msp": 1.0 - 1.0 / num_classes, "entropy": math.log(num_classes),
             "mutual_information": math.log(num_classes), "variation_ratio": 1.0}
    histograms = {}
    for kind, values in scores.items():
        top = upper.get(kind, float(max(values["in"].max(), values["out"].max())) or 1.0)
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
