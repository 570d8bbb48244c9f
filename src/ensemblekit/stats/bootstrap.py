"""Verdicts from a paired bootstrap over seeds and test examples: holds, does not hold, or
inconclusive, with the 95 % interval of the difference behind each.

A claim such as "A is better calibrated than B" is tested on the runs both methods made with
the same seeds, on the same test examples. One bootstrap replicate draws the seeds with
replacement and the test examples with replacement -- the *same* draws for every method, which
is what makes it paired -- recomputes each method's metric on that resample (ECE and AUROC are
recomputed on the resampled set, never averaged per example), averages it over the drawn seeds,
and takes the difference. The claim:

- **holds** when the percentile interval of the difference lies entirely in the claimed
  direction (e.g. below 0 for "A has a lower ECE than B");
- **does not hold** when it lies entirely in the opposite direction;
- is **inconclusive** otherwise (the interval contains 0; identical methods always are).

A claim made of several comparisons ("A lies between B and C" = "B worse than A" and "A worse
than C") holds only if each of them holds, does not hold if any of them does not, and is
inconclusive otherwise (:func:`combine`).

Resampling is done with integer weights: replicate ``b`` gives example ``i`` the weight
``w[b, i]`` = how often it was drawn, so a metric is a function of per-example values, labels
and weights ``(B, N)`` that returns ``(B,)``: every replicate at once, vectorised
(:class:`Metric`). Any plain ``fn(values, labels) -> float`` becomes one with
:func:`metric_from_function` (a Python loop over the replicates: general, slower).

The draws (:func:`draw_resamples`) are fixed by one seed: ``rng =
numpy.random.default_rng(seed)``; first ``seed_index = rng.integers(0, S, size=(B, S))``, then
for each stratum in ascending order of its label (one stratum when ``strata`` is None), with
``P`` its example positions in ascending order, ``P[rng.integers(0, len(P), size=(B,
len(P)))]``. Strata keep their sizes: OOD detection resamples the in-distribution and the OOD
examples separately.

The metrics every replicate is computed from at once (accuracy, NLL, Brier, ECE, shift ECE,
AUROC, per-sample means, pairwise CKA) are in :mod:`ensemblekit.stats.weighted`.

Usage::

    from ensemblekit.stats.weighted import ECE

    resamples = draw_resamples(n_examples=len(labels), n_seeds=3, n_boot=1000, seed=0)
    result = compare(ECE, better=de_probs_per_seed, worse=single_probs_per_seed,
                     labels=labels, resamples=resamples)
    result.verdict, result.difference.low, result.difference.high
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._validation import check_float, check_int, check_seed

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
#: The three verdicts, in the order reports explain them.
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)
#: Replicates of the default bootstrap; enough for stable 2.5 % / 97.5 % percentiles.
DEFAULT_N_BOOT = 2000

#: ``weighted(values, labels, weights (B, N) float64) -> (B,) float64``.
WeightedFunction = Callable[[object, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Metric:
    """A metric every bootstrap replicate can be computed from at once.

    ``weighted(values, labels, weights)``: ``values`` per-example data of one run (a tensor
    ``(N, ...)`` or a tuple of them; what it holds is the metric's business), ``labels (N,)``,
    ``weights (B, N)`` float64 non-negative example weights (integer counts for bootstrap
    replicates) -> ``(B,)`` float64, the metric of each weighted set. Calling the metric,
    ``metric(values, labels)``, evaluates it once with unit weights: the plain metric.
    ``higher_is_better`` sets which direction "better" claims.
    """

    name: str
    higher_is_better: bool
    weighted: WeightedFunction

    def __call__(self, values, labels: torch.Tensor) -> float:
        weights = torch.ones(1, len(labels), dtype=torch.float64)
        return float(self.weighted(values, labels, weights)[0])


@dataclass(frozen=True)
class Resamples:
    """Bootstrap draws shared by every method compared on them (that is the pairing).

    ``seed_counts (B, S)`` float64: how often replicate ``b`` drew run (seed) ``s``;
    ``example_weights (B, N)`` float64: how often it drew example ``n``.
    """

    seed_counts: torch.Tensor
    example_weights: torch.Tensor

    @property
    def n_boot(self) -> int:
        return self.seed_counts.shape[0]

    @property
    def n_seeds(self) -> int:
        return self.seed_counts.shape[1]

    @property
    def n_examples(self) -> int:
        return self.example_weights.shape[1]


@dataclass(frozen=True)
class Interval:
    """A statistic on the full data (``estimate``) and the percentile interval ``[low,
    high]`` of its bootstrap replicates at ``level``."""

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Comparison:
    """``better`` is claimed better than ``worse`` on ``metric``: ``difference`` is
    ``metric(better) - metric(worse)`` (its ``estimate`` the difference of the means over
    seeds) and ``verdict`` one of :data:`VERDICTS`."""

    metric: str
    better: str
    worse: str
    better_value: float
    worse_value: float
    difference: Interval
    verdict: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # the difference nests as its own dict


# -- the draws -------------------------------------------------------------------------------


def draw_resamples(n_examples: int, n_seeds: int, *, n_boot: int = DEFAULT_N_BOOT,
                   seed: int = 0, strata=None) -> Resamples:
    """``n_boot`` replicates over ``n_seeds`` runs and ``n_examples`` examples (module
    docstring: the exact draws). ``strata (N,)``: labels of groups resampled separately, each
    keeping its size (e.g. in-distribution vs OOD)."""
    n_examples = check_int("n_examples", n_examples, minimum=1)
    n_seeds = check_int("n_seeds", n_seeds, minimum=1)
    n_boot = check_int("n_boot", n_boot, minimum=1)
    rng = np.random.default_rng(check_seed(seed))
    seed_index = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    if strata is None:
        groups = [np.arange(n_examples)]
    else:
        strata = np.asarray(torch.as_tensor(strata).cpu())
        if strata.shape != (n_examples,):
            raise ValueError(f"strata must have shape ({n_examples},) like the examples, got "
                             f"{strata.shape}")
        groups = [np.flatnonzero(strata == value) for value in np.unique(strata)]
    rows = np.arange(n_boot)[:, None] * n_examples
    counts = np.zeros(n_boot * n_examples, dtype=np.int64)
    for positions in groups:
        drawn = positions[rng.integers(0, positions.size, size=(n_boot, positions.size))]
        counts += np.bincount((drawn + rows).ravel(), minlength=n_boot * n_examples)
    seed_counts = np.zeros(n_boot * n_seeds, dtype=np.int64)
    seed_rows = np.arange(n_boot)[:, None] * n_seeds
    seed_counts += np.bincount((seed_index + seed_rows).ravel(), minlength=n_boot * n_seeds)
    return Resamples(
        seed_counts=torch.from_numpy(seed_counts.reshape(n_boot, n_seeds)).double(),
        example_weights=torch.from_numpy(counts.reshape(n_boot, n_examples)).double(),
    )


# -- replicates and intervals ----------------------------------------------------------------


def observed(metric: Metric, runs: Sequence, labels: torch.Tensor) -> float:
    """The mean over runs (seeds) of ``metric`` on the full data of each run."""
    runs = _runs(runs)
    return float(np.mean([metric(values, labels) for values in runs]))


def replicates(metric: Metric, runs: Sequence, labels: torch.Tensor,
               resamples: Resamples) -> torch.Tensor:
    """``(B,)``: per replicate, the mean of ``metric`` over the drawn runs, each run's metric
    computed on the drawn examples. ``runs``: per-example values of one method, one entry per
    seed (in the order of ``resamples``' seeds)."""
    runs = _runs(runs)
    if len(runs) != resamples.n_seeds:
        raise ValueError(f"runs holds {len(runs)} seeds but the resamples were drawn for "
                         f"{resamples.n_seeds}; draw them with n_seeds={len(runs)}")
    if len(labels) != resamples.n_examples:
        raise ValueError(f"labels has {len(labels)} examples but the resamples were drawn for "
                         f"{resamples.n_examples}")
    per_run = torch.stack([metric.weighted(values, labels, resamples.example_weights)
                           for values in runs], dim=1)  # (B, S)
    return (per_run * resamples.seed_counts).sum(1) / resamples.n_seeds


def interval(estimate: float, replicate_values: torch.Tensor, *,
             level: float = 0.95) -> Interval:
    """The percentile interval (numpy's linear interpolation) of ``replicate_values (B,)``
    at ``level``, around ``estimate``: the interval of any statistic of replicates, e.g. a
    difference, or ``|a - b| - |a - c|``."""
    level = check_float("level", level, minimum=0.0, maximum=1.0, min_inclusive=False,
                        max_inclusive=False)
    values = replicate_values.detach().double().cpu().numpy()
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return Interval(float(estimate), float(low), float(high), level, int(values.size))


def verdict(difference: Interval, *, claimed: str) -> str:
    """:data:`HOLDS` when ``difference`` lies entirely on the ``claimed`` side of 0
    (``"positive"`` or ``"negative"``), :data:`DOES_NOT_HOLD` when entirely on the other,
    :data:`INCONCLUSIVE` otherwise."""
    if claimed not in ("positive", "negative"):
        raise ValueError(f"claimed must be 'positive' or 'negative', got {claimed!r}")
    sign = 1.0 if claimed == "positive" else -1.0
    low, high = sorted((sign * difference.low, sign * difference.high))
    if low > 0:
        return HOLDS
    if high < 0:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """The verdict of a claim made of several comparisons, all of which it asserts: holds if
    every one holds, does not hold if any does not, inconclusive otherwise."""
    verdicts = list(verdicts)
    if not verdicts:
        raise ValueError("combine needs at least one verdict")
    unknown = [v for v in verdicts if v not in VERDICTS]
    if unknown:
        raise ValueError(f"unknown verdict(s) {unknown}; valid: {', '.join(VERDICTS)}")
    if DOES_NOT_HOLD in verdicts:
        return DOES_NOT_HOLD
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def paired_difference(metric: Metric, a: Sequence, b: Sequence, labels: torch.Tensor,
                      resamples: Resamples, *, level: float = 0.95) -> Interval:
    """``metric(a) - metric(b)`` (means over seeds) with its paired bootstrap interval."""
    estimate = observed(metric, a, labels) - observed(metric, b, labels)
    return interval(estimate, replicates(metric, a, labels, resamples)
                    - replicates(metric, b, labels, resamples), level=level)


def compare(metric: Metric, *, better: Sequence, worse: Sequence, labels: torch.Tensor,
            resamples: Resamples, names: tuple[str, str] = ("a", "b"),
            level: float = 0.95) -> Comparison:
    """Test "``better`` is better than ``worse`` on ``metric``" (``names``: theirs, for the
    record) on the same resamples."""
    return compare_replicates(
        metric, names=names,
        observed_values=(observed(metric, better, labels), observed(metric, worse, labels)),
        replicate_values=(replicates(metric, better, labels, resamples),
                          replicates(metric, worse, labels, resamples)), level=level)


def compare_replicates(metric: Metric, *, names: tuple[str, str],
                       observed_values: tuple[float, float],
                       replicate_values: tuple[torch.Tensor, torch.Tensor],
                       level: float = 0.95) -> Comparison:
    """:func:`compare` from values computed already (:func:`observed` and
    :func:`replicates` of ``(better, worse)`` on the same resamples): a report comparing many
    pairs computes each method's replicates once."""
    difference = interval(observed_values[0] - observed_values[1],
                          replicate_values[0] - replicate_values[1], level=level)
    claimed = "positive" if metric.higher_is_better else "negative"
    return Comparison(metric.name, names[0], names[1], float(observed_values[0]),
                      float(observed_values[1]), difference, verdict(difference, claimed=claimed))


def closeness(observed_values: tuple[float, float, float],
              replicate_values: tuple[torch.Tensor, torch.Tensor, torch.Tensor], *,
              level: float = 0.95) -> Interval:
    """``|m - near| - |m - far|`` for a metric's values of ``(m, near, far)`` (means over
    seeds, and replicates (B,) on the same resamples): negative when ``m`` is closer to
    ``near`` than to ``far`` -- e.g. "BatchEnsemble tracks the single model rather than Deep
    Ensembles" holds when ``verdict(closeness(...), claimed="negative")`` does."""
    m, near, far = observed_values
    m_reps, near_reps, far_reps = replicate_values
    return interval(abs(m - near) - abs(m - far),
                    (m_reps - near_reps).abs() - (m_reps - far_reps).abs(), level=level)


def paired_bootstrap(metric: Metric, a: Sequence, b: Sequence, labels: torch.Tensor, *,
                     n_boot: int = DEFAULT_N_BOOT, seed: int = 0, level: float = 0.95,
                     strata=None) -> Interval:
    """One call: draw the resamples for ``len(a)`` seeds and ``len(labels)`` examples, return
    :func:`paired_difference`."""
    a, b = _runs(a), _runs(b)
    if len(a) != len(b):
        raise ValueError(f"a and b must hold the same seeds (paired), got {len(a)} and "
                         f"{len(b)} runs")
    resamples = draw_resamples(len(labels), len(a), n_boot=n_boot, seed=seed, strata=strata)
    return paired_difference(metric, a, b, labels, resamples, level=level)


def metric_from_function(name: str, function: Callable[[object, torch.Tensor], float], *,
                         higher_is_better: bool) -> Metric:
    """A :class:`Metric` from a plain ``function(values, labels) -> float``: each replicate
    repeats every example as often as it was drawn (``values`` a tensor ``(N, ...)`` or a
    tuple of them, indexed along dim 0) and calls ``function`` once -- B calls."""

    def weighted(values, labels, weights):
        results = []
        positions = torch.arange(weights.shape[1])
        for row in weights:
            index = torch.repeat_interleave(positions, row.round().long())
            results.append(float(function(_take(values, index), labels[index])))
        return torch.tensor(results, dtype=torch.float64)

    return Metric(name, higher_is_better, weighted)


def _take(values, index: torch.Tensor):
    if isinstance(values, tuple):
        return tuple(value[index] for value in values)
    return values[index]


def _runs(runs) -> list:
    runs = list(runs)
    if not runs:
        raise ValueError("runs must hold the per-example values of at least one seed")
    return runs
