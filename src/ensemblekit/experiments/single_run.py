"""Single runs: train one model to a checkpoint, evaluate a checkpoint, write corrupted sets.

``train`` saves ``<out>/model.pt`` (:func:`ensemblekit.checkpoint.save`, with the dataset name in
its metadata) and ``<out>/train.json`` (the settings and per-epoch history); after every epoch
it writes ``<out>/checkpoints/last.pt``, from which ``resume`` continues a killed run.
``evaluate`` loads a checkpoint and runs the benchmark's protocol on it. ``corrupt`` writes a
test set under every corruption in the CIFAR-10-C layout plus a kind x severity preview image.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import checkpoint
from .. import data as datasets
from .._validation import check_int, check_seed
from ..atomic import atomic_write_text
from ..train import CHECKPOINT_NAME, train_model
from .calibrated import calibrated_record
from .checks import check_methods, check_ood, check_shift, check_toml_flag
from .config import Settings
from .cost import count_parameters
from .pipeline import build, check_batch_size
from .protocol import predict_splits, protocol_record
from .roles import spectrum_subject
from .runs import Log
from .splits import load_experiment_data


@dataclass
class TrainSettings(Settings):
    """``ensemblekit train``: one ``method`` model trained with ``seed`` (default method: the
    library's centre, the spectrum subject -- Masksembles).

    ``resume``: continue from ``<out>/checkpoints/last.pt`` (written after every epoch) instead
    of refusing to start over it.
    """

    method: str = field(default_factory=spectrum_subject)
    seed: int = 0
    resume: bool = False

    command = "train"

    def validate(self) -> None:
        super().validate()
        self.method = check_methods([self.method])[0]
        self.seed = check_seed(self.seed)
        check_toml_flag("resume", self.resume)


def run_train(settings: TrainSettings, *, log: Log = print) -> Path:
    """Train and save one model; return the checkpoint path."""
    out = Path(settings.out)
    checkpoint_dir = out / "checkpoints"
    if (checkpoint_dir / CHECKPOINT_NAME).exists() and not settings.resume:
        # Starting over would overwrite the previous run's training state epoch by epoch.
        raise ValueError(f"{checkpoint_dir / CHECKPOINT_NAME} holds a run already: pass "
                         "--resume to continue it, or choose another --out")
    model = build(settings, settings.method, seed=settings.seed)
    check_batch_size(settings, model)
    data = load_experiment_data(settings, log=log)
    started = time.perf_counter()
    config = settings.train_config(seed=settings.seed, method=settings.method)
    # Early stopping watches the validation split (held out of data.train).
    validation = data.validation if config.early_stopping_patience is not None else None
    history = train_model(model, data.train, config, checkpoint_dir=checkpoint_dir,
                          resume=settings.resume, validation_data=validation)
    seconds = time.perf_counter() - started
    path = checkpoint.save(model, out / "model.pt",
                           metadata={"dataset": settings.dataset, "seed": settings.seed,
                                     "epochs": settings.epochs})
    atomic_write_text(out / "train.json", json.dumps(
        {"settings": settings.to_dict(), "params": count_parameters(model),
         "seconds": seconds, "history": history}, indent=1))
    last = history[-1]
    log(f"trained {settings.method} ({count_parameters(model):,} parameters) on "
        f"{settings.dataset} for {settings.epochs} epochs in {seconds:.1f} s: final training "
        f"loss {last['loss']:.4f}, accuracy {last['accuracy']:.4f}; saved {path}")
    return path


def run_evaluate(
    checkpoint_path: str | Path,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    corruptions="all",
    severities=(1, 2, 3, 4, 5),
    ood: str = "auto",
    out: str | Path | None = None,
    batch_size: int = 500,
    mc_samples: int | None = None,
    seed: int = 0,
    calibrate: bool = False,
    log: Log = print,
) -> dict:
    """Evaluate the model saved at ``checkpoint_path`` (clean, shift, OOD); write the record to
    ``out`` (default: ``evaluation.json`` beside the checkpoint) and return it.

    ``calibrate``: also fit a temperature on the validation split (the part of the training
    split that ``ensemblekit train`` holds out) and add the scaled clean-test and OOD metrics
    as ``record["calibrated"]`` (see :mod:`ensemblekit.experiments.calibrated`). Each split
    goes through the model once; the record and the "+TS" metrics come from those outputs.
    """
    checkpoint_path = Path(checkpoint_path)
    payload = checkpoint.read_checkpoint(checkpoint_path)
    if dataset is None:
        dataset = (payload.get("metadata") or {}).get("dataset")
        if dataset is None:
            raise ValueError(f"{checkpoint_path} does not record its dataset; pass --dataset")
    out = Path(out) if out is not None else checkpoint_path.parent / "evaluation.json"
    settings = Settings(dataset=dataset, data_dir=data_dir, out=str(out.parent))
    corruptions, severities = check_shift(dataset, corruptions, severities)
    ood = check_ood(dataset, ood)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if mc_samples is not None:
        mc_samples = check_int("mc_samples", mc_samples, minimum=1)
    model = checkpoint.load(checkpoint_path)
    data = load_experiment_data(settings, ood=ood, corruptions=corruptions,
                                severities=severities, with_train=bool(calibrate), log=log)
    outputs = predict_splits(model, data, seed=seed, batch_size=batch_size,
                             num_samples=mc_samples, validation=bool(calibrate))
    record = {"checkpoint": str(checkpoint_path), "dataset": dataset,
              "model_config": model.config, "ood_name": data.ood_name,
              "ood_status": data.ood_status,
              **protocol_record(outputs, data.num_classes)[0]}
    if calibrate:
        record["calibrated"] = calibrated_record(outputs)
    atomic_write_text(out, json.dumps(record, indent=1))
    test = record["test"]
    log(f"{checkpoint_path}: accuracy {test['accuracy']:.4f}, NLL {test['nll']:.4f}, Brier "
        f"{test['brier']:.4f}, ECE {test['ece']:.4f}")
    for severity, metrics in record.get("shift_mean", {}).items():
        log(f"  severity {severity} (mean over {len(corruptions)} corruptions): accuracy "
            f"{metrics['accuracy']:.4f}, NLL {metrics['nll']:.4f}, ECE {metrics['ece']:.4f}")
    for score, metrics in record.get("ood", {}).items():
        if metrics["auroc"] is None:  # undefined for this model (one member)
            log(f"  OOD vs {ood} by {score}: n/a")
            continue
        log(f"  OOD vs {ood} by {score}: AUROC {metrics['auroc']:.4f}, AUPR "
            f"{metrics['aupr']:.4f}, FPR@95%TPR {metrics['fpr95']:.4f}")
    if calibrate:
        scaled, fitted = record["calibrated"]["test"], record["calibrated"]["calibration"]
        log(f"  temperature-scaled (T = {fitted['temperatures'][0]:.4f}, fitted on "
            f"{fitted['n_validation']} validation samples): accuracy {scaled['accuracy']:.4f}, "
            f"NLL {scaled['nll']:.4f}, Brier {scaled['brier']:.4f}, ECE {scaled['ece']:.4f}")
    log(f"wrote {out}")
    return record


def run_corrupt(
    dataset: str = "digits",
    *,
    data_dir: str | None = None,
    corruptions="all",
    severities=(1, 2, 3, 4, 5),
    out: str | Path | None = None,
    index: int = 0,
    seed: int = 0,
    log: Log = print,
) -> Path:
    """Write ``dataset``'s test set under each corruption (CIFAR-10-C layout) into ``out`` and
    a preview ``out/preview.png`` of test image ``index``; return the folder."""
    corruptions, severities = check_shift(dataset, corruptions, severities)
    if not corruptions:
        raise ValueError("corrupt needs at least one corruption; pass --corruptions all")
    seed = check_seed(seed)
    out = Path(out) if out is not None else Path("runs") / f"corrupted-{dataset}"
    images, labels = datasets.as_tensors(datasets.load_dataset(dataset, "test",
                                                               data_dir=data_dir))
    index = check_int("index", index, minimum=0, maximum=len(images) - 1)
    started = time.perf_counter()
    datasets.write_corrupted_folder((images, labels), out, corruptions, severities, seed=seed)
    preview = datasets.save_corruption_preview(
        images[index], out / "preview.png", corruptions, severities, seed=seed,
        title=f"{dataset} test image {index}: {len(corruptions)} corruptions x severities")
    log(f"wrote {len(corruptions)} corruptions x {len(severities)} severities of the {dataset} "
        f"test set ({len(images)} images) to {out} in {time.perf_counter() - started:.1f} s; "
        f"preview: {preview}")
    return out
