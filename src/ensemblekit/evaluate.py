"""One evaluation: clean test set, corrupted copies at each severity, and OOD detection.

The member logits come from :func:`ensemblekit.predict.predict` (the one inference loop: the
batch normalised, ``predict_members(model, x) -> (M, B, K)``, modes restored, seeded), streamed
batch by batch into a :class:`~ensemblekit.metrics.PredictionAccumulator`; nothing of size
(M, N, K) is kept.

Returned dict (metric dicts as documented in :mod:`ensemblekit.metrics.evaluation`):

- ``"test"``: metrics on the clean test set (with an ``"ood"`` entry when ``ood_data`` is given);
- ``"shift"`` (only with ``corruptions``): ``{severity: {corruption: metrics}}`` (severity an
  ``int``);
- ``"shift_mean"``: ``{severity: {metric: mean over corruptions}}`` for every scalar metric;
- ``"shift_overall"``: ``{metric: mean over all corruptions and severities}`` (the CIFAR-10-C
  "mean corrupted" protocol);
- ``"ood"``: ``{score: {"auroc", "aupr", "aupr_in", "fpr95"}}`` (only with ``ood_data``);
- ``"inference_ms_per_sample"``: wall time of ``predict_members`` alone on the clean test set,
  per sample (no data loading, device transfer, normalisation or metrics; CUDA synchronised;
  the first batch is left out when there are several, as it pays one-off start-up costs);
- ``"arrays"``: per-sample NumPy arrays for plots (not JSON; drop it before serialising):
  ``"confidence"`` (N,) top-label confidence of the mean prediction, ``"correct"`` (N,) bool,
  ``"label"`` and ``"prediction"`` (N,) int, and with ``ood_data``
  ``"ood_scores": {score: {"in": (N,), "out": (N_ood,)}}`` (higher = more OOD).

**One shift source.** The corrupted images are those the experiments read from a
CIFAR-10-C-layout folder written by :func:`ensemblekit.data.write_corrupted_folder` with the
same ``seed``: the whole test set corrupted per kind and severity in fixed chunks of
:data:`~ensemblekit.data.shifted.CORRUPTION_CHUNK` images with seeds derived from ``(seed,
kind, severity, chunk)``, then quantised to uint8 (:func:`ensemblekit.data.corrupted_batches`
streams them). They do not depend on ``batch_size``; the metrics then move only by the last
bits of the model's arithmetic at another batch size. (Before, each batch was corrupted on the
fly with a seed of its batch index and not quantised, so the numbers changed with
``batch_size`` and differed from the benchmark's.)

Everything but the timing is reproducible: predictions run under ``torch.manual_seed(seed)``
in a forked RNG that leaves the caller's generator untouched, one pass per set (MC-Dropout
draws its masks from its own generator, seeded by the model's ``sampling_seed``, so its
members are the same whatever ``seed`` and ``batch_size``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ._validation import check_int, check_seed
from .data import CORRUPTIONS, corrupted_batches
from .data.shifted import CORRUPTION_CHUNK
from .metrics import OOD_SCORES, PredictionAccumulator
from .predict import Transform, batches, predict, resolve_normalizer
from .runtime import cpu_threads


def evaluate_model(
    model: nn.Module,
    test_data: Dataset | tuple[torch.Tensor, torch.Tensor],
    *,
    dataset: str | None = None,
    normalize: Transform | None = None,
    corruptions: Sequence[str] = (),
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    ood_data: Dataset | torch.Tensor | tuple | None = None,
    batch_size: int = 500,
    num_samples: int | None = None,
    seed: int = 0,
    n_bins: int = 15,
    threads: int | None = None,
) -> dict:
    """Evaluate ``model`` on clean, corrupted and out-of-distribution data (keys: module doc).

    Args:
        model: a model from :func:`ensemblekit.methods.build_model` or a converter, or what
            :func:`ensemblekit.compile_members` returns (a plain classifier
            ``(B, ...) -> (B, K)`` is evaluated as one member).
        test_data: ``(images, labels)`` tensors with images in [0, 1], or a ``Dataset`` of
            ``(image, label)`` pairs.
        dataset: dataset name; its normalisation is looked up in :mod:`ensemblekit.data`
            unless ``normalize`` is given; corruptions need it too (they are image kinds).
        normalize: ``(B, C, H, W) -> (B, C, H, W)`` applied after corruption, before the model.
        corruptions: names from ``ensemblekit.data.CORRUPTIONS``: the test set corrupted as
            ``write_corrupted_folder(..., seed=seed)`` stores it (module docstring).
        severities: corruption severities in 1..5.
        ood_data: out-of-distribution images in [0, 1] -- a tensor, ``(images, labels)``, or a
            ``Dataset`` -- normalised like the test set.
        batch_size: images per forward pass (each is tiled M times inside the model).
        num_samples: stochastic forward passes for MC-Dropout (default: the model's).
        seed: seeds corruptions (and the global RNG that a stochastic model of your own reads).
        n_bins: calibration bins.
        threads: torch CPU threads while evaluating (restored afterwards; None: unchanged).
            Small models evaluate several times faster with 1 on a busy machine.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_seed(seed)
    severities = tuple(check_int("severity", s, minimum=1, maximum=5) for s in severities)
    corruptions = (corruptions,) if isinstance(corruptions, str) else tuple(corruptions)
    unknown = [kind for kind in corruptions if kind not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; valid choices are: "
                         f"{', '.join(CORRUPTIONS)}")
    if corruptions and not severities:
        raise ValueError("severities must hold at least one of 1..5 when corruptions are given")
    options = dict(normalize=resolve_normalizer(dataset, normalize), batch_size=batch_size,
                   num_samples=num_samples, seed=seed, keep=False)
    with cpu_threads(threads):
        accumulator = PredictionAccumulator(n_bins=n_bins)
        test = predict(model, test_data, on_batch=accumulator.update, timed=True, **options)
        if ood_data is not None:
            predict(model, ood_data, on_batch=lambda logits, _: accumulator.update_ood(logits),
                    **options)
        clean, arrays = scored(accumulator, ood=ood_data is not None)
        results = {"test": clean}
        if "ood" in clean:
            results["ood"] = clean["ood"]
        results["inference_ms_per_sample"] = _ms_per_sample(test.seconds, test.sizes)
        if corruptions:
            shift = {severity: {kind: _shifted(model, test_data, kind, severity, n_bins,
                                               options)
                                for kind in corruptions}
                     for severity in severities}
            results["shift"] = shift
            results["shift_mean"] = {severity: _mean_scalars(list(by_kind.values()))
                                     for severity, by_kind in shift.items()}
            results["shift_overall"] = _mean_scalars(
                [metrics for by_kind in shift.values() for metrics in by_kind.values()])
    results["arrays"] = arrays
    return results


def split_metrics(logits: torch.Tensor, labels: torch.Tensor, *,
                  ood_logits: torch.Tensor | None = None, batch_size: int = 500,
                  n_bins: int = 15) -> tuple[dict, dict]:
    """:func:`evaluate_model`'s ``"test"`` metrics and ``"arrays"`` from stored member logits
    ``(M, N, K)`` with labels ``(N,)`` (and OOD logits ``(M, N_ood, K)``), fed to the
    accumulator in the chunks of ``batch_size`` rows a streaming pass would feed it, so the
    numbers are the same to the bit."""
    accumulator = PredictionAccumulator(n_bins=n_bins)
    for start in range(0, logits.shape[1], batch_size):
        stop = start + batch_size
        accumulator.update(logits[:, start:stop].contiguous(), labels[start:stop])
    if ood_logits is not None:
        for start in range(0, ood_logits.shape[1], batch_size):
            accumulator.update_ood(ood_logits[:, start:start + batch_size].contiguous())
    return scored(accumulator, ood=ood_logits is not None)


def scored(accumulator: PredictionAccumulator, *, ood: bool) -> tuple[dict, dict]:
    """The accumulator's metrics and the per-sample arrays (NumPy) of the module docstring."""
    metrics = accumulator.compute()
    per_sample = accumulator.per_sample()
    arrays = {key: per_sample[key].cpu().numpy()
              for key in ("confidence", "correct", "label", "prediction")}
    if ood:
        arrays["ood_scores"] = {
            kind: {"in": per_sample["scores"][kind].cpu().numpy(),
                   "out": per_sample["ood_scores"][kind].cpu().numpy()}
            for kind in OOD_SCORES
        }
    return metrics, arrays


def _shifted(model, test_data, kind: str, severity: int, n_bins: int, options: dict) -> dict:
    """Metrics on ``test_data`` under ``kind`` at ``severity`` (the folder's images)."""
    accumulator = PredictionAccumulator(n_bins=n_bins)
    images = corrupted_batches(batches(test_data, CORRUPTION_CHUNK), kind, severity,
                               seed=options["seed"])
    predict(model, images, on_batch=accumulator.update, **options)
    return accumulator.compute()


def _ms_per_sample(seconds: list[float], sizes: list[int]) -> float:
    """Milliseconds per sample, the first batch left out when there are several (it pays
    one-off costs: allocator, kernel selection)."""
    if len(seconds) > 1:
        seconds, sizes = seconds[1:], sizes[1:]
    return 1000.0 * sum(seconds) / sum(sizes)


def _mean_scalars(results: list[dict]) -> dict:
    """Mean of each float-valued metric over a list of metric dicts (counts left out)."""
    keys = [key for key, value in results[0].items()
            if isinstance(value, float) and not key.startswith("n_")]
    return {key: float(np.mean([r[key] for r in results])) if not any(
        math.isnan(r[key]) for r in results) else float("nan") for key in keys}
