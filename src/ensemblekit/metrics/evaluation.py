"""One pass over member logits that gives every metric, chunk by chunk.

``PredictionAccumulator`` takes member logits (M, B, K) and labels (B,) in as many chunks as
needed and keeps only sums and a few scalars per sample, never (M, N, K): an ImageNet-size
test set streams through it. Its ``per_sample()`` hands those scalars out for plots.
``evaluate_predictions`` is the one-shot wrapper.

Aggregation (the same as every reference library): softmax per member, then the mean over
members; all arithmetic is float64. Each value equals, up to float64 rounding, the matching
function of this package applied to ``torch.softmax(member_logits.double(), -1)`` over the
whole set, however the samples were split into chunks.

Keys of the returned dict (scalars are Python floats, matrices nested lists):

- ``"n_samples"``, ``"n_members"``, ``"n_classes"``, ``"n_bins"``;
- ``"accuracy"``, ``"nll"``, ``"brier"`` of the mean prediction; ``"member_accuracy"`` (M,);
- ``"ece"``, ``"adaptive_ece"``, ``"mce"``; ``"reliability"``: ``{"edges", "count",
  "accuracy", "confidence"}`` per equal-width bin (see ``reliability_bins``);
- ``"predictive_entropy"``, ``"expected_entropy"``, ``"mutual_information"``,
  ``"variation_ratio"``: means over the samples;
- ``"disagreement"``, ``"normalized_disagreement"`` (disagreement / ensemble error), ``"kl"``,
  ``"js"``, ``"cosine"``: means over the off-diagonal member pairs (nan for one member);
  ``"disagreement_matrix"``, ``"kl_matrix"``, ``"js_matrix"``, ``"cosine_matrix"``: (M, M);
- selective prediction on the top-label confidence of the mean prediction (see
  ``metrics.selective``): ``"aurc"``, ``"e_aurc"``, ``"augrc"``, ``"risk_at_{80,90,95}_coverage"``,
  ``"coverage_at_{1,2,5}_risk"``;
- only when OOD logits were given: ``"n_ood_samples"`` and ``"ood"``:
  ``{score: {"auroc", "aupr", "aupr_in", "fpr95"}}`` for each score in ``OOD_SCORES``; for one
  member the ``DISAGREEMENT_OOD_SCORES`` (constant then) have every value None (null in JSON).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .._validation import check_int
from ._inputs import check_labels, check_logits
from .calibration import (
    _adaptive_expected_gap,
    _equal_width_bins,
    _expected_gap,
    _maximum_gap,
    _reliability,
)
from .classification import (
    PROBABILITY_FLOOR,
    _brier_per_sample,
    _nll_per_sample,
    _top_label,
)
from .diversity import (
    _cosine_sums,
    _disagreement_counts,
    _js_sums,
    _kl_sums,
    _off_diagonal_mean,
)
from .ood import (
    DISAGREEMENT_OOD_SCORES,
    OOD_SCORES,
    _auroc,
    _average_precision,
    _fpr_at_tpr,
    _score_table,
    _staircases,
)
from .selective import _summary as _selective_summary

# Samples per internal block: keeps the float64 temporaries of one block in cache-sized pieces
# however large a chunk the caller passes.
_BLOCK = 32768
_LOG_FLOOR = math.log(PROBABILITY_FLOOR)
#: Shifted logits z = x - max x are floored here: exp(z) underflows to exactly 0 far above it.
_MIN_SHIFT = -1e4


class PredictionAccumulator:
    """Streams member logits through every metric of ``evaluate_predictions``.

    Usage::

        acc = PredictionAccumulator()
        for member_logits, labels in loader:        # (M, B, K), (B,)
            acc.update(member_logits, labels)
        for member_logits in ood_loader:            # optional, (M, B', K)
            acc.update_ood(member_logits)
        results = acc.compute()

    Memory: a few scalars per sample (confidence, prediction, label, seven OOD scores; see
    ``per_sample``), plus O(M^2) sums. The number of members M and classes K is fixed by the
    first update.
    """

    def __init__(self, n_bins: int = 15):
        self.n_bins = check_int("n_bins", n_bins, minimum=1)
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far."""
        self.n_members: int | None = None
        self.n_classes: int | None = None
        self._per_sample: dict[str, list[torch.Tensor]] = {}
        self._ood_scores: dict[str, list[torch.Tensor]] = {}
        self._sums: dict[str, torch.Tensor] = {}

    @property
    def n_samples(self) -> int:
        """In-distribution samples added so far."""
        return sum(chunk.numel() for chunk in self._per_sample.get("label", []))

    @property
    def n_ood_samples(self) -> int:
        """OOD samples added so far."""
        return sum(chunk.numel() for chunk in self._ood_scores.get("msp", []))

    def update(self, member_logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a chunk of in-distribution predictions: logits (M, B, K), labels (B,)."""
        logits = self._checked_logits("member_logits", member_logits)
        labels = check_labels(
            "labels", labels, n_samples=logits.shape[1], n_classes=logits.shape[2]
        ).to(logits.device)
        for start in range(0, logits.shape[1], _BLOCK):
            self._add_block(logits[:, start : start + _BLOCK], labels[start : start + _BLOCK])

    def update_ood(self, member_logits: torch.Tensor) -> None:
        """Add a chunk of out-of-distribution predictions: logits (M, B, K)."""
        logits = self._checked_logits("ood_member_logits", member_logits)
        for start in range(0, logits.shape[1], _BLOCK):
            block = logits[:, start : start + _BLOCK]
            probs, member_entropy, _ = _softmax_parts(block)
            scores = _score_table(block.double(), probs, probs.mean(0), member_entropy,
                                  probs.argmax(-1))
            for name, values in scores.items():
                self._ood_scores.setdefault(name, []).append(values)

    def per_sample(self) -> dict:
        """The per-sample values kept so far, in the order added (for plots and analyses).

        ``"confidence"`` (N,) float64 top-label confidence of the mean prediction,
        ``"prediction"`` and ``"label"`` (N,) int64, ``"correct"`` (N,) bool, ``"scores"``:
        ``{kind: (N,) float64}`` and, once ``update_ood`` was called, ``"ood_scores"``:
        ``{kind: (N_ood,) float64}`` for every kind of ``OOD_SCORES`` (higher = more OOD).
        """
        if self.n_samples == 0:
            raise ValueError(
                "PredictionAccumulator has no in-distribution predictions yet: call "
                "update(member_logits, labels) at least once first"
            )
        values = {name: torch.cat(chunks) for name, chunks in self._per_sample.items()}
        result = {
            "confidence": values["confidence"],
            "prediction": values["prediction"],
            "label": values["label"],
            "correct": values["prediction"] == values["label"],
            "scores": {kind: values[kind] for kind in OOD_SCORES},
        }
        if self._ood_scores:
            result["ood_scores"] = {kind: torch.cat(self._ood_scores[kind]) for kind in OOD_SCORES}
        return result

    def compute(self) -> dict:
        """Every metric over all chunks added so far (keys: see the module docstring)."""
        per_sample = self.per_sample()
        scores = per_sample["scores"]
        sums = self._sums
        confidence, correct = per_sample["confidence"], per_sample["correct"]
        n = correct.numel()
        bins = _equal_width_bins(confidence, correct, self.n_bins)
        accuracy = correct.double().mean().item()
        disagreement = sums["disagreement"].double() / n
        kl, js, cosine = sums["kl"] / n, sums["js"] / n, sums["cosine"] / n
        results = {
            "n_samples": n,
            "n_members": self.n_members,
            "n_classes": self.n_classes,
            "n_bins": self.n_bins,
            "accuracy": accuracy,
            "nll": (sums["nll"] / n).item(),
            "brier": (sums["brier"] / n).item(),
            "member_accuracy": (sums["member_correct"].double() / n).tolist(),
            "ece": _expected_gap(*bins[1:]),
            "adaptive_ece": _adaptive_expected_gap(confidence, correct, self.n_bins),
            "mce": _maximum_gap(*bins[1:]),
            "reliability": {key: value.tolist() for key, value in _reliability(*bins).items()},
        }
        for name in ("predictive_entropy", "expected_entropy"):
            results[name] = (sums[name] / n).item()
        for name in ("mutual_information", "variation_ratio"):
            results[name] = scores[name].mean().item()
        error = 1 - accuracy
        mean_disagreement = _off_diagonal_mean(disagreement)
        results.update(
            disagreement=mean_disagreement,
            normalized_disagreement=_safe_ratio(mean_disagreement, error),
            kl=_off_diagonal_mean(kl),
            js=_off_diagonal_mean(js),
            cosine=_off_diagonal_mean(cosine),
            disagreement_matrix=disagreement.tolist(),
            kl_matrix=kl.tolist(),
            js_matrix=js.tolist(),
            cosine_matrix=cosine.tolist(),
        )
        results.update(_selective_summary(confidence, (~correct).double()))
        if "ood_scores" in per_sample:
            results["n_ood_samples"] = self.n_ood_samples
            results["ood"] = {
                kind: _undefined_detection() if self.n_members == 1
                and kind in DISAGREEMENT_OOD_SCORES
                else _detection_summary(scores[kind], per_sample["ood_scores"][kind])
                for kind in OOD_SCORES
            }
        return results

    def _checked_logits(self, name: str, member_logits) -> torch.Tensor:
        logits = check_logits(name, member_logits)
        n_members, _, n_classes = logits.shape
        if self.n_members is None:
            self.n_members, self.n_classes = n_members, n_classes
        elif (n_members, n_classes) != (self.n_members, self.n_classes):
            raise ValueError(
                f"{name} must keep the (members, classes) of earlier chunks: expected "
                f"(M={self.n_members}, *, K={self.n_classes}), got shape {tuple(logits.shape)}"
            )
        return logits

    def _add_block(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        probs, member_entropy, floored_log_probs = _softmax_parts(logits)
        mean_probs = probs.mean(0)
        member_votes = probs.argmax(-1)  # (M, b)
        confidence, prediction = _top_label(mean_probs)
        scores = _score_table(logits.double(), probs, mean_probs, member_entropy, member_votes)
        # A copy: the caller's label buffer may be reused for the next batch.
        per_sample = {"confidence": confidence, "prediction": prediction, "label": labels.clone()}
        for name, values in {**per_sample, **scores}.items():
            self._per_sample.setdefault(name, []).append(values)
        block_sums = {
            "nll": _nll_per_sample(mean_probs, labels).sum(),
            "brier": _brier_per_sample(mean_probs, labels).sum(),
            "predictive_entropy": scores["entropy"].sum(),
            "expected_entropy": member_entropy.mean(0).sum(),
            "member_correct": member_votes.eq(labels).sum(1),
            "disagreement": _disagreement_counts(member_votes),
            "kl": _kl_sums(probs, member_entropy, floored_log_probs),
            "js": _js_sums(probs, member_entropy),
            "cosine": _cosine_sums(probs),
        }
        for name, value in block_sums.items():
            self._sums[name] = self._sums[name] + value if name in self._sums else value


def _softmax_parts(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Member logits (M, b, K) -> float64 probabilities (M, b, K), their entropies (M, b) and
    ``log(max(p, PROBABILITY_FLOOR))`` (M, b, K).

    From logits the entropy and log-probabilities need no log of a probability: with
    ``z = x - max x`` and ``s = sum exp z``, ``log p = z - log s`` and ``H = log s - sum p z``.
    """
    # A copy: the in-place steps below must not write into a caller's float64 logits.
    shifted = logits.to(torch.float64, copy=True)
    # A spread of finite float64 logits beyond the float range makes x - max overflow to -inf
    # and 0 * -inf a NaN; exp(z) is exactly 0 below -746 already, so the floor changes nothing.
    shifted -= shifted.amax(-1, keepdim=True)
    shifted.clamp_(min=_MIN_SHIFT)
    exp_shifted = shifted.exp()
    total = exp_shifted.sum(-1, keepdim=True)
    probs = exp_shifted.div_(total)
    log_total = total.log_()
    entropy = log_total.squeeze(-1) - (probs * shifted).sum(-1)
    floored_log_probs = shifted.sub_(log_total).clamp_(min=_LOG_FLOOR)
    return probs, entropy, floored_log_probs


def evaluate_predictions(
    member_logits,
    labels: torch.Tensor | None = None,
    *,
    ood_member_logits=None,
    n_bins: int = 15,
) -> dict:
    """Every metric of the package in one pass (keys: see the module docstring).

    member_logits: a tensor (M, N, K) with ``labels`` (N,), or an iterable of
    ``(member_logits (M, B, K), labels (B,))`` chunks with ``labels`` left out.
    ood_member_logits: optional tensor (M, N', K) or iterable of (M, B', K) chunks; when given,
    the result has an ``"ood"`` entry with AUROC, AUPR (OOD and in-distribution positive) and
    FPR at 95% TPR for every score in ``OOD_SCORES`` (None for the disagreement scores of a
    single member).
    """
    accumulator = PredictionAccumulator(n_bins=n_bins)
    if isinstance(member_logits, torch.Tensor):
        if labels is None:
            raise ValueError(
                "labels are required with a member_logits tensor: pass labels of shape "
                f"({member_logits.shape[1] if member_logits.ndim == 3 else 'N'},)"
            )
        accumulator.update(member_logits, labels)
    elif labels is not None:
        raise ValueError(
            "labels must be left out when member_logits is an iterable of "
            "(member_logits, labels) chunks"
        )
    else:
        for chunk in _iterable("member_logits", member_logits):
            if not (isinstance(chunk, tuple | list) and len(chunk) == 2):
                raise ValueError(
                    "member_logits chunks must be (member_logits, labels) pairs, got "
                    f"{type(chunk).__name__}"
                )
            accumulator.update(*chunk)
    if ood_member_logits is not None:
        if isinstance(ood_member_logits, torch.Tensor):
            accumulator.update_ood(ood_member_logits)
        else:
            for chunk in _iterable("ood_member_logits", ood_member_logits):
                accumulator.update_ood(chunk)
    return accumulator.compute()


def _iterable(name: str, value) -> Iterable:
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        raise TypeError(
            f"{name} must be a tensor or an iterable of chunks, got {type(value).__name__}"
        )
    return value


def _detection_summary(scores_in: torch.Tensor, scores_out: torch.Tensor) -> dict[str, float]:
    staircase, mirrored = _staircases(scores_in, scores_out)
    return {
        "auroc": _auroc(*staircase),
        "aupr": _average_precision(*staircase),
        "aupr_in": _average_precision(*mirrored),
        "fpr95": _fpr_at_tpr(*staircase, 0.95),
    }


def _undefined_detection() -> dict[str, None]:
    """The detection summary of a score that is constant by construction (one member)."""
    return dict.fromkeys(("auroc", "aupr", "aupr_in", "fpr95"))


def _safe_ratio(numerator: float, denominator: float) -> float:
    if denominator == 0:
        return float("nan") if numerator == 0 or numerator != numerator else float("inf")
    return numerator / denominator
