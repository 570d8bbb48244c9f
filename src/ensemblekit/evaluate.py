"""One evaluation pass: clean test set, corrupted copies at each severity, and OOD detection.

For every batch: corrupt the [0, 1] images (shift only), normalise them, then
``predict_members(model, x) -> (M, B, K)`` logits, streamed into a
:class:`~ensemblekit.metrics.PredictionAccumulator`; nothing of size (M, N, K) is kept.

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

Everything but the timing is reproducible: corruptions draw from seeds derived from ``seed``,
the corruption, the severity and the batch index (so they depend on ``batch_size``), and
predictions run under ``torch.manual_seed(seed)`` in a forked RNG that leaves the caller's
generator untouched (MC-Dropout draws its masks from its own generator, seeded by the model's
``sampling_seed``, so its members are the same whatever ``seed`` and ``batch_size``).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ._validation import check_finite, check_int, check_seed
from .metrics import OOD_SCORES, PredictionAccumulator
from .runtime import cpu_threads, model_device, synchronize

Transform = Callable[[torch.Tensor], torch.Tensor]


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
        corruptions: names from ``ensemblekit.data.CORRUPTIONS`` to apply on the fly.
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
    corrupt = _corruption_function(corruptions)
    if corruptions and not severities:
        raise ValueError("severities must hold at least one of 1..5 when corruptions are given")
    normalize = _normalizer(dataset, normalize)
    device = model_device(model)

    def prepare(images: torch.Tensor) -> torch.Tensor:
        images = images.to(device, non_blocking=True)
        return normalize(images) if normalize else images

    @torch.no_grad()
    def predict(inputs: torch.Tensor) -> torch.Tensor:
        return _predict_members(model, inputs, num_samples)

    with cpu_threads(threads), torch.random.fork_rng(
        devices=[device] if device.type == "cuda" else []
    ):
        torch.manual_seed(seed)
        clean, arrays, ms_per_sample = _clean_pass(
            prepare, predict, test_data, ood_data, batch_size, device, n_bins
        )
        results = {"test": clean}
        if "ood" in clean:
            results["ood"] = clean["ood"]
        results["inference_ms_per_sample"] = ms_per_sample
        if corruptions:
            shift = {
                severity: {
                    kind: _shifted_pass(prepare, predict, corrupt, test_data, kind, severity,
                                        seed, batch_size, n_bins, device)
                    for kind in corruptions
                }
                for severity in severities
            }
            results["shift"] = shift
            results["shift_mean"] = {severity: _mean_scalars(list(by_kind.values()))
                                     for severity, by_kind in shift.items()}
            results["shift_overall"] = _mean_scalars(
                [metrics for by_kind in shift.values() for metrics in by_kind.values()]
            )
    results["arrays"] = arrays
    return results


def _clean_pass(prepare, predict, test_data, ood_data, batch_size, device, n_bins):
    """Metrics, per-sample arrays and predict milliseconds per sample on the clean test set."""
    accumulator = PredictionAccumulator(n_bins=n_bins)
    timed_seconds = timed_samples = 0.0
    all_seconds = 0.0
    for index, (images, labels) in enumerate(_batches(test_data, batch_size)):
        inputs = prepare(images)
        synchronize(device)
        started = time.perf_counter()
        logits = predict(inputs)
        synchronize(device)
        elapsed = time.perf_counter() - started
        all_seconds += elapsed
        if index > 0:  # the first batch pays one-off costs (allocator, kernel selection)
            timed_seconds, timed_samples = timed_seconds + elapsed, timed_samples + len(images)
        accumulator.update(logits, labels.to(logits.device))
    if ood_data is not None:
        for images, _ in _batches(ood_data, batch_size):
            accumulator.update_ood(predict(prepare(images)))
    metrics = accumulator.compute()
    if timed_samples == 0:  # a single batch: nothing better to report than its time
        timed_seconds, timed_samples = all_seconds, metrics["n_samples"]
    per_sample = accumulator.per_sample()
    arrays = {key: per_sample[key].cpu().numpy()
              for key in ("confidence", "correct", "label", "prediction")}
    if ood_data is not None:
        arrays["ood_scores"] = {
            kind: {"in": per_sample["scores"][kind].cpu().numpy(),
                   "out": per_sample["ood_scores"][kind].cpu().numpy()}
            for kind in OOD_SCORES
        }
    return metrics, arrays, 1000.0 * timed_seconds / timed_samples


def _shifted_pass(prepare, predict, corrupt, test_data, kind, severity, seed, batch_size, n_bins,
                  device) -> dict:
    accumulator = PredictionAccumulator(n_bins=n_bins)
    for index, (images, labels) in enumerate(_batches(test_data, batch_size)):
        images = images.to(device, non_blocking=True)  # corrupt on the model's device
        shifted = corrupt(images, kind, severity, seed=corruption_seed(seed, kind, severity, index))
        logits = predict(prepare(shifted))
        accumulator.update(logits, labels.to(logits.device))
    return accumulator.compute()


def corruption_seed(seed: int, kind: str, severity: int, batch_index: int) -> int:
    """The seed ``evaluate_model`` corrupts batch ``batch_index`` with: stable across runs and
    processes (a CRC of the four values, not Python's salted ``hash``)."""
    return zlib.crc32(f"{seed}/{kind}/{severity}/{batch_index}".encode())


def _mean_scalars(results: list[dict]) -> dict:
    """Mean of each float-valued metric over a list of metric dicts (counts left out)."""
    keys = [key for key, value in results[0].items()
            if isinstance(value, float) and not key.startswith("n_")]
    return {key: float(np.mean([r[key] for r in results])) if not any(
        math.isnan(r[key]) for r in results) else float("nan") for key in keys}


def _batches(data, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` batches in order; labels are -1 for bare OOD image tensors."""
    if isinstance(data, torch.Tensor):
        data = (data, torch.full((len(data),), -1, dtype=torch.long))
    elif isinstance(data, Dataset) and hasattr(data, "tensors") \
            and getattr(data, "transform", None) is None and len(data.tensors) == 2:
        data = data.tensors
    if isinstance(data, (tuple, list)):
        if len(data) != 2 or not isinstance(data[0], torch.Tensor) \
                or len(data[0]) != len(data[1]):
            raise ValueError("data as a pair must be (images (N, ...), labels (N,)) tensors")
        images, labels = data
        if len(images) == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        for start in range(0, len(images), batch_size):
            yield _checked_batch(images[start:start + batch_size], labels[start:start + batch_size])
        return
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be tensors or a Dataset, got {type(data).__name__}")
    if hasattr(data, "__len__") and len(data) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    for images, labels in DataLoader(data, batch_size=batch_size, shuffle=False):
        yield _checked_batch(images, labels)


def _checked_batch(images: torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 images and int64 labels; integer images or float labels would give silently
    wrong metrics (0..255 pixels read as [0, 1] ones, labels truncated to integers)."""
    labels = torch.as_tensor(labels)
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1], got dtype {images.dtype}; "
                         "convert uint8 images with images.float() / 255")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    check_finite("images", images)
    return images.float(), labels.long()


def _predict_members(model: nn.Module, x: torch.Tensor, num_samples: int | None):
    if hasattr(model, "method") or getattr(model, "returns_member_logits", False):
        from .methods import predict_members

        return predict_members(model, x, num_samples=num_samples)
    model.eval()
    return model(x).unsqueeze(0)


def _corruption_function(corruptions: tuple[str, ...]):
    if not corruptions:
        return None
    from .data import CORRUPTIONS, corrupt

    unknown = [kind for kind in corruptions if kind not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; valid choices are: "
                         f"{', '.join(CORRUPTIONS)}")
    return corrupt


def _normalizer(dataset: str | None, normalize: Transform | None) -> Transform | None:
    if normalize is not None:
        if not callable(normalize):
            raise ValueError(f"normalize must be callable, got {type(normalize).__name__}")
        return normalize
    if dataset is None:
        return None
    from .data import normalizer

    return normalizer(dataset)
