"""The evaluation protocol on one trained model, from one inference pass per split.

:func:`predict_splits` pushes each split through the model once (:func:`ensemblekit.predict.
predict`): the clean test set, the validation split, the OOD set, and per corruption kind its
corrupted test sets (every severity in one stream, read from the experiment's CIFAR-10-C-layout
folder so that every method and seed sees the same images). Everything else is computed from
those outputs: the record's metrics (:func:`protocol_record`: the clean test set, reliability
bins, shift per kind and severity, OOD detection and its score histograms), the per-example
predictions the paired bootstrap resamples, the validation metrics, and the "+TS" evaluation
(:mod:`~ensemblekit.experiments.calibrated`). The streaming metrics see the stored logits in
the chunks a streaming pass of ``batch_size`` would feed them, so their numbers are those of
:func:`ensemblekit.evaluate_model` to the bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..evaluate import split_metrics
from ..metrics import evaluate_predictions
from ..predict import MemberOutputs, member_samples, predict
from .splits import ExperimentData, corrupted_set

#: The metrics kept per corrupted set (and averaged over corruption kinds per severity).
SHIFT_METRICS = ("accuracy", "nll", "brier", "ece")
#: The metrics of the ensemble prediction kept on the validation split.
VALIDATION_METRICS = ("accuracy", "nll", "brier", "ece")
#: Bins of the stored OOD score histograms (in- vs out-of-distribution, per score).
OOD_HISTOGRAM_BINS = 40


@dataclass
class SplitOutputs:
    """The member outputs of one model on each split of an experiment (one pass each).

    ``shift``: ``{kind: outputs}``, each holding every severity of ``severities`` in turn
    (``N`` rows each, in the test set's order). ``batch_size``: the inference batch, which is
    also the chunk the streaming metrics are fed.
    """

    test: MemberOutputs
    validation: MemberOutputs | None = None
    ood: MemberOutputs | None = None
    shift: dict[str, MemberOutputs] = field(default_factory=dict)
    severities: list[int] = field(default_factory=list)
    batch_size: int = 500


def predict_splits(model, data: ExperimentData, *, seed: int, batch_size: int = 500,
                   num_samples: int | None = None, validation: bool = True,
                   shift: bool = True) -> SplitOutputs:
    """One pass of ``model`` over the test split, the validation split (if ``validation`` and
    ``data`` has one), the OOD set (if any) and, if ``shift``, each corruption kind's sets.
    ``num_samples`` applies to stochastic methods only (MC-Dropout's passes)."""
    options = dict(dataset=data.name, batch_size=batch_size,
                   num_samples=member_samples(model, num_samples), seed=seed)
    outputs = SplitOutputs(test=predict(model, data.test, **options), batch_size=batch_size)
    if validation and data.validation is not None:
        outputs.validation = predict(model, data.validation, **options)
    if data.ood is not None:
        outputs.ood = predict(model, data.ood, **options)
    if shift and data.shift_folder is not None:
        outputs.severities = list(data.severities)
        for kind in data.corruptions:
            blocks = [corrupted_set(data, kind, severity) for severity in data.severities]
            stacked = (torch.cat([block[0] for block in blocks]),
                       torch.cat([block[1] for block in blocks]))
            outputs.shift[kind] = predict(model, stacked, **options)
    return outputs


def protocol_record(outputs: SplitOutputs, num_classes: int, *,
                    with_predictions: bool = False) -> tuple[dict, dict | None]:
    """The JSON-ready record of one trained model, and (``with_predictions``) its per-example
    predictions, from its :class:`SplitOutputs`.

    Record keys: ``test`` (scalar metrics of the clean test set, member diversity included),
    ``reliability`` (equal-width bins of the clean test set), ``shift`` (``{severity: {kind:
    {metric}}}``) and ``shift_mean`` (``{severity: {metric: mean over kinds}}``) when there are
    corruptions, ``ood`` (``{score: {auroc, aupr, aupr_in, fpr95}}``) and ``ood_histograms``
    when there is an OOD set. No latency: one timed batch is noise (see
    :mod:`ensemblekit.experiments.cost` for cost measured as it should be).

    The predictions (tensors, lists and strings only: they load with ``weights_only=True``),
    which the report's paired bootstrap resamples:

    - ``"labels"`` (N,) int64 and ``"test_probs"`` (N, K) float64: the clean test set's labels
      and mean member probabilities (the same pass as the record's ``test``);
    - with an OOD set, ``"ood_scores"``: ``{score: {"in": (N,), "out": (N_ood,)}}`` float64,
      the scores the record's AUROC is computed from (higher = more OOD);
    - with corruptions, ``"shift"``: ``{"severities": [str], "kinds": [str], "confidence":
      (S, C, N) float64 top-label confidence, "correct": (S, C, N) bool}`` for severity ``s``,
      kind ``c`` and test image ``n`` (row n of every corrupted set is test image n).
    """
    test, ood = outputs.test, outputs.ood
    clean, arrays = split_metrics(test.logits, test.labels,
                                  ood_logits=None if ood is None else ood.logits,
                                  batch_size=outputs.batch_size)
    record = {"test": scalars(clean), "reliability": clean["reliability"]}
    predictions = None
    if with_predictions:
        predictions = {"labels": test.labels,
                       "test_probs": torch.softmax(test.logits.double(), dim=-1).mean(0)}
    if ood is not None:
        record["ood"] = clean["ood"]
        record["ood_histograms"] = ood_histograms(arrays["ood_scores"], num_classes)
        if with_predictions:
            predictions["ood_scores"] = {
                kind: {side: torch.as_tensor(values[side], dtype=torch.float64)
                       for side in ("in", "out")}
                for kind, values in arrays["ood_scores"].items()}
    if outputs.shift:
        record["shift"], shifted = _shift_record(outputs)
        record["shift_mean"] = {
            severity: {key: _mean([by_kind[kind][key] for kind in by_kind])
                       for key in SHIFT_METRICS}
            for severity, by_kind in record["shift"].items()
        }
        if with_predictions:
            predictions["shift"] = shifted
    return record, predictions


def validation_metrics(outputs: SplitOutputs) -> dict | None:
    """``{metric: value}`` of the ensemble prediction (the mean member probability) on the
    validation split for each of :data:`VALIDATION_METRICS` (``nll`` is its negative
    log-likelihood); None when there is no validation split."""
    if outputs.validation is None:
        return None
    metrics = evaluate_predictions(outputs.validation.logits, outputs.validation.labels)
    return {key: metrics[key] for key in VALIDATION_METRICS}


def _shift_record(outputs: SplitOutputs) -> tuple[dict, dict]:
    """``{severity: {kind: {metric}}}`` and the per-example ``"shift"`` predictions."""
    by_severity: dict[str, dict] = {str(severity): {} for severity in outputs.severities}
    confidence, correct = [], []
    for kind, shifted in outputs.shift.items():
        logits, labels = shifted.logits, shifted.labels
        top, predicted = torch.softmax(logits.double(), dim=-1).mean(0).max(dim=-1)
        size = labels.shape[0] // len(outputs.severities)
        kind_confidence, kind_correct = [], []
        for index, severity in enumerate(outputs.severities):
            start, stop = index * size, (index + 1) * size
            metrics = evaluate_predictions(logits[:, start:stop], labels[start:stop])
            by_severity[str(severity)][kind] = {key: metrics[key] for key in SHIFT_METRICS}
            kind_confidence.append(top[start:stop])
            kind_correct.append(predicted[start:stop] == labels[start:stop])
        confidence.append(torch.stack(kind_confidence))
        correct.append(torch.stack(kind_correct))
    arrays = {"severities": list(by_severity), "kinds": list(outputs.shift),
              "confidence": torch.stack(confidence, dim=1).contiguous(),
              "correct": torch.stack(correct, dim=1).contiguous()}
    return by_severity, arrays


def ood_histograms(scores: dict, num_classes: int) -> dict:
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


def scalars(metrics: dict) -> dict:
    """The float-valued entries of a metrics dict (no matrices, counts or nested dicts);
    undefined values (nan: the disagreement of a single member) become None, valid JSON."""
    return {key: value if math.isfinite(value) else None for key, value in metrics.items()
            if isinstance(value, float) and not key.startswith("n_")}


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))
